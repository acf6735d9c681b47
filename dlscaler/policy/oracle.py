"""``oracle``: perfect foresight, a lower bound for reports (simulator only).

It knows every arrival (``forecast.arrivals``) and when every running gang ends
(``RunningGang.expected_end_s``). A node is asked for exactly one provisioning delay before
the gang that needs it arrives; a gang that can use capacity a running gang will have freed
by its arrival waits for it instead of growing the pool; an idle node is removed at once
unless a known arrival within the provisioning delay will use it (keeping it longer costs
more than booting a new one: the ski-rental break-even).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dlscaler.config import PolicyConfig
from dlscaler.model import Forecast, Gang, NodePhase, PoolState, RunningGang
from dlscaler.placement import nodes_needed, place_workers
from dlscaler.plan import GangNote, NodeRemoval, Plan
from dlscaler.policy import capacity

_EPS = 1e-6


@dataclass(slots=True)
class _Timeline:
    """Free GPUs of one pool's nodes as a function of (future) time."""

    view: capacity.PoolView
    base_free: list[int]
    releases: list[list[tuple[float, int]]] = field(default_factory=list)
    holds: list[list[tuple[float, float, int]]] = field(default_factory=list)

    def free_at(self, t: float) -> list[int]:
        out = []
        for i, base in enumerate(self.base_free):
            f = base + sum(g for end, g in self.releases[i] if end <= t)
            f -= sum(g for start, end, g in self.holds[i] if start <= t < end)
            out.append(f)
        return out

    def hold(self, chosen: Sequence[int], gang: Gang, start: float) -> None:
        end = start + (gang.duration_s if gang.duration_s is not None else float("inf"))
        for i in chosen:
            self.holds[i].append((start, end, gang.gpus_per_worker))
            self.view.reserved.add(i)

    def add_nodes(self, k: int) -> None:
        self.view.add_empty(k)
        for _ in range(k):
            self.base_free.append(self.view.state.spec.gpus_per_node)
            self.releases.append([])
            self.holds.append([])


def _timeline(view: capacity.PoolView, running: Sequence[RunningGang]) -> _Timeline:
    tl = _Timeline(view, list(view.free))
    tl.releases = [[] for _ in tl.base_free]
    tl.holds = [[] for _ in tl.base_free]
    index = {name: i for i, name in enumerate(view.names) if name}
    for r in running:
        if r.pool != view.state.name or r.expected_end_s is None:
            continue
        for node in r.nodes:
            i = index.get(node)
            if i is not None:
                tl.releases[i].append((r.expected_end_s, r.gang.gpus_per_worker))
    return tl


def decide_oracle(
    *,
    now_s: float,
    pools: Sequence[PoolState],
    pending: Sequence[Gang],
    running: Sequence[RunningGang],
    forecast: Forecast,
    config: PolicyConfig,
) -> Plan:
    views = [capacity.PoolView.of(p) for p in pools]
    timelines = {v.state.name: _timeline(v, running) for v in views}
    max_delay = max((p.spec.provisioning_delay_s for p in pools), default=0.0)
    arrivals = [(now_s, g) for g in pending] + [
        (g.submit_s, g) for g in forecast.arrivals if g.submit_s > now_s
    ]
    arrivals.sort(key=lambda a: (a[0], a[1].job_id))
    notes: list[GangNote] = []
    next_decision: float | None = None

    for t, gang in arrivals:
        if t > now_s + max_delay + _EPS:
            wake = t - max_delay
            next_decision = wake if next_decision is None else min(next_decision, wake)
            break
        ordered_views = capacity.pool_order(views, gang, config)
        placed = False
        for v in ordered_views:
            if not v.state.spec.accepts(gang):
                continue
            tl = timelines[v.state.name]
            chosen = place_workers(tl.free_at(t), gang.workers, gang.gpus_per_worker)
            if chosen is not None:
                tl.hold(chosen, gang, t)
                placed = True
                break
        if placed:
            continue
        waiting_for_lead: float | None = None
        for v in ordered_views:
            spec = v.state.spec
            if not spec.accepts(gang) or not v.state.available(now_s):
                continue
            k = nodes_needed(gang.workers, gang.gpus_per_worker, spec.gpus_per_node)
            if k > v.headroom(config):
                continue
            request_at = t - spec.provisioning_delay_s
            if request_at > now_s + _EPS:
                waiting_for_lead = request_at
                break
            tl = timelines[v.state.name]
            first = len(tl.base_free)
            tl.add_nodes(k)
            v.gangs_for_added.append(gang.job_id)
            fresh = [0] * first + [spec.gpus_per_node] * k
            chosen = place_workers(fresh, gang.workers, gang.gpus_per_worker)
            if chosen is not None:
                tl.hold(chosen, gang, t)
            placed = True
            break
        if waiting_for_lead is not None:
            next_decision = (
                waiting_for_lead if next_decision is None else min(next_decision, waiting_for_lead)
            )
        elif not placed and t <= now_s:
            notes.append(capacity.why_not(gang, views, now_s))

    ups = capacity.scale_ups(views, "known arrivals need nodes one provisioning delay ahead")
    ups += capacity.ensure_min(views)
    removals: list[NodeRemoval] = []
    for v in views:
        index = {name: i for i, name in enumerate(v.names) if name}
        idle = sorted(
            (
                n
                for n in v.state.nodes
                if n.phase is NodePhase.READY
                and not n.used_gpus
                and index.get(n.name, -1) not in v.reserved
            ),
            key=lambda n: n.name,
        )
        room = v.planned_nodes - v.state.spec.min_nodes
        for node in idle[: max(0, room)]:
            v.removed.add(node.name)
            removals.append(
                NodeRemoval(v.state.name, node.name, "idle, and no known arrival needs it soon")
            )
    removals += capacity.enforce_max(views)
    return Plan(
        targets=capacity.targets(views),
        scale_ups=tuple(ups),
        removals=tuple(removals),
        notes=tuple(notes),
        next_decision_s=next_decision,
        policy="oracle",
    )
