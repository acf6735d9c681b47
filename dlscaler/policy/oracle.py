"""``oracle``: perfect foresight, a reference for reports (simulator only).

It provisions no more than ``reactive`` with an idle timeout of at least the provisioning
delay. (With a shorter timeout, reactive removes a node that is needed again within one
boot and makes the next gang wait for a new one; that can save node-time by delaying work,
which the oracle does not do: it lets a gang wait only for nodes it already has.)

It knows every arrival (``forecast.arrivals``) and when every running gang ends
(``RunningGang.expected_end_s``), and plans each pool's free GPUs as a function of time:

- A gang that existing nodes can hold within one provisioning delay of its arrival
  (nodes freed by gangs that end, nodes in flight becoming ready) waits for them instead of
  growing a pool: a new node would not be ready sooner, so reacting could not serve it
  sooner either, and the new node would cost its boot time and more.
- Otherwise the pool that can run it soonest grows by the fewest nodes, asked for exactly
  one provisioning delay before the gang starts (at once for a gang already waiting), and
  the gang holds them from when they are ready.
- An idle node is removed at once unless a known gang starts on it within the pool's
  provisioning delay: keeping it longer costs more than booting a new one (the ski-rental
  break-even).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from dlscaler.config import PolicyConfig
from dlscaler.model import Forecast, Gang, NodePhase, PoolState, RunningGang
from dlscaler.placement import nodes_needed, place_workers
from dlscaler.plan import GangNote, NodeRemoval, Plan, ScaleUp
from dlscaler.policy import capacity

_EPS = 1e-6


@dataclass(slots=True)
class _Timeline:
    """Free GPUs of one pool's nodes over (future) time."""

    view: capacity.PoolView
    now_s: float
    base_free: list[int] = field(default_factory=list)
    """Free GPUs per node now (nodes in flight: all of them)."""
    ready_at: list[float] = field(default_factory=list)
    releases: list[list[tuple[float, int]]] = field(default_factory=list)
    """Per node: (when, GPUs) freed by running gangs that end."""
    holds: list[list[tuple[float, float, int]]] = field(default_factory=list)
    """Per node: (start, end, GPUs) planned for known gangs."""
    future_nodes: int = 0
    """Nodes planned for gangs whose growth is asked for at a later decision."""

    @property
    def delay_s(self) -> float:
        return self.view.state.spec.provisioning_delay_s

    def append(self, free: int, ready_at: float) -> None:
        self.base_free.append(free)
        self.ready_at.append(ready_at)
        self.releases.append([])
        self.holds.append([])

    def _free_at(self, i: int, t: float) -> int:
        free = self.base_free[i] + sum(g for end, g in self.releases[i] if end <= t)
        return free - sum(g for start, end, g in self.holds[i] if start <= t < end)

    def free_during(self, start: float, end: float) -> list[int]:
        """Per node, the GPUs free throughout ``[start, end)`` (0 if not ready by start).
        Free GPUs only fall when a hold starts, so those instants are the ones to check."""
        out = []
        for i in range(len(self.base_free)):
            if self.ready_at[i] > start + _EPS:
                out.append(0)
                continue
            points = [start] + [s for s, _, _ in self.holds[i] if start < s < end]
            out.append(min(self._free_at(i, p) for p in points))
        return out

    def _changes(self, after: float, until: float) -> set[float]:
        """Instants in ``(after, until]`` at which some node's free GPUs may rise."""
        out: set[float] = set()
        for i in range(len(self.base_free)):
            out.update(end for end, _ in self.releases[i] if after < end <= until)
            out.update(end for _, end, _ in self.holds[i] if after < end <= until)
            if after < self.ready_at[i] <= until:
                out.add(self.ready_at[i])
        return out

    def earliest_fit(self, gang: Gang, t: float, until: float) -> tuple[float, list[int]] | None:
        """The earliest start in ``[t, until]`` at which the gang fits existing nodes."""
        duration = gang.duration_s if gang.duration_s is not None else math.inf
        for start in sorted({t} | self._changes(t, until)):
            free = self.free_during(start, start + duration)
            chosen = place_workers(free, gang.workers, gang.gpus_per_worker)
            if chosen is not None:
                return start, chosen
        return None

    def wait_limit(self, t: float) -> float:
        """How long past ``t`` a gang waits for existing nodes rather than grow: one
        provisioning delay, or until the nodes already in flight are ready."""
        in_flight = [r for r in self.ready_at if r > self.now_s]
        return max([t + self.delay_s, *in_flight])

    def plan_growth(
        self, gang: Gang, t: float, headroom: int
    ) -> tuple[float, int, list[int]] | None:
        """The fewest new nodes with which the gang fits, the earliest start with that
        many, and where. New nodes are ready one provisioning delay from now at the soonest;
        waiting (within :meth:`wait_limit`) for nodes in flight or freed may need fewer."""
        spec = self.view.state.spec
        duration = gang.duration_s if gang.duration_s is not None else math.inf
        most = min(nodes_needed(gang.workers, gang.gpus_per_worker, spec.gpus_per_node), headroom)
        first = max(t, self.now_s + self.delay_s)
        best: tuple[float, int, list[int]] | None = None
        for start in sorted({first} | self._changes(first, self.wait_limit(t))):
            free = self.free_during(start, start + duration)
            fewer = most if best is None else best[1] - 1
            for k in range(1, fewer + 1):
                chosen = place_workers(
                    free + [spec.gpus_per_node] * k, gang.workers, gang.gpus_per_worker
                )
                if chosen is not None:
                    best = (start, k, chosen)
                    break
        return best

    def hold(self, chosen: Sequence[int], gang: Gang, start: float) -> None:
        end = start + (gang.duration_s if gang.duration_s is not None else math.inf)
        for i in chosen:
            self.holds[i].append((start, end, gang.gpus_per_worker))

    def used_within(self, i: int, until: float) -> bool:
        return any(start <= until + _EPS for start, _, _ in self.holds[i])


def _timeline(view: capacity.PoolView, running: Sequence[RunningGang], now_s: float) -> _Timeline:
    tl = _Timeline(view, now_s)
    nodes = {n.name: n for n in view.state.nodes}
    for free, name in zip(view.free, view.names, strict=True):
        node = nodes.get(name)
        if node is not None and node.phase is NodePhase.READY:
            ready_at = -math.inf
        elif node is not None and node.expected_ready_s is not None:
            ready_at = node.expected_ready_s
        else:  # in flight without an estimate, or planned in this decision (minNodes)
            ready_at = now_s + tl.delay_s
        tl.append(free, ready_at)
    index = {name: i for i, name in enumerate(view.names) if name}
    for r in running:
        if r.pool != view.state.name or r.expected_end_s is None:
            continue
        for node_name in r.nodes:
            i = index.get(node_name)
            if i is not None:
                tl.releases[i].append((r.expected_end_s, r.gang.gpus_per_worker))
    return tl


@dataclass(slots=True)
class _Planned:
    views: list[capacity.PoolView]
    timelines: dict[str, _Timeline]
    ups: list[ScaleUp]
    notes: list[GangNote]
    wakes: list[float]


def _plan(
    now_s: float,
    pools: Sequence[PoolState],
    arrivals: Sequence[tuple[float, Gang]],
    running: Sequence[RunningGang],
    config: PolicyConfig,
) -> _Planned:
    views = [capacity.PoolView.of(p) for p in pools]
    ups = capacity.ensure_min(views)
    timelines = {v.state.name: _timeline(v, running, now_s) for v in views}
    max_delay = max((p.spec.provisioning_delay_s for p in pools), default=0.0)
    notes: list[GangNote] = []
    wakes: list[float] = []
    for t, gang in arrivals:
        if t > now_s + max_delay + _EPS:
            wakes.append(t - max_delay)
            break
        ordered_views = [
            v for v in capacity.pool_order(views, gang, config) if v.state.spec.accepts(gang)
        ]
        # Existing capacity in reverse expander order (see capacity.provision_for).
        fit = None
        for v in reversed(ordered_views):
            tl = timelines[v.state.name]
            fit = tl.earliest_fit(gang, t, tl.wait_limit(t))
            if fit is not None:
                tl.hold(fit[1], gang, fit[0])
                break
        if fit is not None:
            continue
        # Grow the pool that can run the gang soonest (expander order among equals).
        options = []
        for rank, v in enumerate(ordered_views):
            tl = timelines[v.state.name]
            growth = tl.plan_growth(gang, t, v.headroom(config) - tl.future_nodes)
            if growth is None:
                continue
            request_at = growth[0] - tl.delay_s  # new nodes ready when the gang starts
            if v.state.available(max(now_s, request_at)):
                options.append((growth[0], rank, request_at, v, growth))
        if not options:
            if t <= now_s:
                notes.append(capacity.why_not(gang, views, now_s))
            continue
        _, _, request_at, v, (start, k, chosen) = min(options, key=lambda o: o[:2])
        tl = timelines[v.state.name]
        if request_at > now_s + _EPS:
            # Not yet: asked for at the next decision, one delay ahead. The gang keeps its
            # place meanwhile, so that later gangs do not plan on the same capacity.
            wakes.append(request_at)
            tl.future_nodes += k
            for _ in range(k):
                tl.append(v.state.spec.gpus_per_node, start)
        else:
            for _ in range(k):
                tl.append(v.state.spec.gpus_per_node, now_s + tl.delay_s)
            v.add_empty(k)
            v.gangs_for_added.append(gang.job_id)
        tl.hold(chosen, gang, start)
    ups += capacity.scale_ups(views, "known arrivals need nodes one provisioning delay ahead")
    return _Planned(views, timelines, ups, notes, wakes)


def _removable(planned: _Planned, now_s: float) -> list[NodeRemoval]:
    """Idle ready nodes no known gang starts on within the pool's provisioning delay."""
    out = []
    for v in planned.views:
        tl = planned.timelines[v.state.name]
        index = {name: i for i, name in enumerate(v.names) if name}
        idle = sorted(
            (
                n
                for n in v.state.nodes
                if n.phase is NodePhase.READY
                and not n.used_gpus
                and not tl.used_within(index[n.name], now_s + tl.delay_s)
            ),
            key=lambda n: n.name,
        )
        room = v.planned_nodes - v.state.spec.min_nodes
        out += [
            NodeRemoval(v.state.name, n.name, "idle, and no known gang needs it soon")
            for n in idle[: max(0, room)]
        ]
    return out


def decide_oracle(
    *,
    now_s: float,
    pools: Sequence[PoolState],
    pending: Sequence[Gang],
    running: Sequence[RunningGang],
    forecast: Forecast,
    config: PolicyConfig,
) -> Plan:
    arrivals = [(now_s, g) for g in pending] + [
        (g.submit_s, g) for g in forecast.arrivals if g.submit_s > now_s
    ]
    arrivals.sort(key=lambda a: (a[0], a[1].submit_s, a[1].job_id))
    # Plan, take out the idle nodes nothing needs soon, and plan again without them until
    # nothing more goes: gangs planned on a removed node are then planned elsewhere (or
    # asked for later) now, not at the next decision, so that decision finds this plan.
    removals: list[NodeRemoval] = []
    gone: set[tuple[str, str]] = set()
    while True:
        snapshot = [
            replace(p, nodes=tuple(n for n in p.nodes if (p.name, n.name) not in gone))
            for p in pools
        ]
        planned = _plan(now_s, snapshot, arrivals, running, config)
        more = _removable(planned, now_s)
        if not more:
            break
        removals += more
        gone.update((r.pool, r.node) for r in more)
    removals += capacity.enforce_max(planned.views)
    return Plan(
        targets=capacity.targets(planned.views),
        scale_ups=tuple(planned.ups),
        removals=tuple(removals),
        notes=tuple(planned.notes),
        next_decision_s=min(planned.wakes, default=None),
        policy="oracle",
    )
