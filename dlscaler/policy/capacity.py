"""A scratch model of capacity that a policy plans on.

Built from the snapshot at the start of ``decide()``: the free GPUs of every ready and
in-flight node (in-flight nodes count as empty capacity, so a loop never scales up twice
for the same gang), plus the nodes the plan adds as it goes. Gangs are placed on it
virtually; nodes that receive a virtual gang are *reserved* and never removed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dlscaler.config import PolicyConfig
from dlscaler.model import Gang, NodePhase, PoolState
from dlscaler.placement import nodes_needed, place_workers
from dlscaler.plan import GangNote, NodeRemoval, ScaleUp


@dataclass(slots=True)
class PoolView:
    state: PoolState
    free: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    """Node name per entry of ``free`` (``""`` for capacity not yet listed or planned)."""
    ready: list[bool] = field(default_factory=list)
    """Whether each entry of ``free`` can take work now (False for nodes in flight)."""
    reserved: set[int] = field(default_factory=set)
    added: int = 0
    added_for_min: int = 0
    """Of ``added``, the nodes that bring the pool up to its minNodes (reported apart)."""
    removed: set[str] = field(default_factory=set)
    gangs_for_added: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, state: PoolState) -> PoolView:
        view = cls(state=state)
        for node in state.nodes:
            if node.phase is NodePhase.DRAINING:
                continue
            view.free.append(node.free_gpus)
            view.names.append(node.name)
            view.ready.append(node.phase is NodePhase.READY)
        unlisted = state.in_flight_nodes - state.count(NodePhase.IN_FLIGHT)
        for _ in range(unlisted):
            view.free.append(state.spec.gpus_per_node)
            view.names.append("")
            view.ready.append(False)
        return view

    @property
    def live_nodes(self) -> int:
        return self.state.live_nodes

    @property
    def planned_nodes(self) -> int:
        return self.state.live_nodes + self.added - len(self.removed)

    def headroom(self, config: PolicyConfig) -> int:
        by_max = self.state.spec.max_nodes - self.planned_nodes
        by_step = config.max_scale_up_nodes - self.added
        return max(0, min(by_max, by_step))

    def place(self, gang: Gang, *, ready_only: bool = False) -> bool:
        """Place on existing (or already planned) capacity; reserves the nodes used.
        ``ready_only``: only on nodes that can take work now."""
        if not self.state.spec.accepts(gang):
            return False
        free = self.free
        if ready_only:
            free = [f if r else 0 for f, r in zip(self.free, self.ready, strict=True)]
        chosen = place_workers(free, gang.workers, gang.gpus_per_worker)
        if chosen is None:
            return False
        for i in chosen:
            self.free[i] -= gang.gpus_per_worker
            self.reserved.add(i)
        return True

    def grow_for(self, gang: Gang, config: PolicyConfig) -> int:
        """Add the fewest fresh nodes that let the gang fit; 0 if the pool cannot."""
        spec = self.state.spec
        if not spec.accepts(gang):
            return 0
        most = min(
            nodes_needed(gang.workers, gang.gpus_per_worker, spec.gpus_per_node),
            self.headroom(config),
        )
        for k in range(1, most + 1):
            trial = self.free + [spec.gpus_per_node] * k
            chosen = place_workers(trial, gang.workers, gang.gpus_per_worker)
            if chosen is not None:
                self.free = trial
                self.names.extend([""] * k)
                self.ready.extend([False] * k)
                for i in chosen:
                    self.free[i] -= gang.gpus_per_worker
                    self.reserved.add(i)
                self.added += k
                self.gangs_for_added.append(gang.job_id)
                return k
        return 0

    def add_empty(self, count: int) -> None:
        self.free.extend([self.state.spec.gpus_per_node] * count)
        self.names.extend([""] * count)
        self.ready.extend([False] * count)
        self.added += count


def pool_order(
    views: Sequence[PoolView], gang: Gang | None, config: PolicyConfig
) -> list[PoolView]:
    """The expander: which pool to grow first. Deterministic (ties broken by name)."""

    def price(v: PoolView) -> float:
        return v.state.spec.usd_per_gpu_hour

    def waste(v: PoolView) -> float:
        spec = v.state.spec
        if gang is None or not spec.accepts(gang):
            return math.inf
        n = nodes_needed(gang.workers, gang.gpus_per_worker, spec.gpus_per_node)
        return (n * spec.gpus_per_node - gang.total_gpus) * spec.usd_per_gpu_hour

    if config.expander == "least-waste":
        return sorted(views, key=lambda v: (waste(v), price(v), v.state.name))
    if config.expander == "priority":
        prio = config.pool_priorities
        return sorted(views, key=lambda v: (-prio.get(v.state.name, 0), price(v), v.state.name))
    return sorted(views, key=lambda v: (price(v), v.state.name))


def why_not(gang: Gang, views: Sequence[PoolView], now_s: float) -> GangNote:
    """Explain why no pool could take a gang right now."""
    type_ok = [v for v in views if gang.fits_gpu_type(v.state.spec.gpu_type)]
    if not type_ok:
        offered = sorted({v.state.spec.gpu_type or "(any)" for v in views})
        return GangNote(
            gang.job_id,
            f"no pool offers GPU type {gang.gpu_type or '(any)'!r} (pools offer: "
            f"{', '.join(offered) or 'none'})",
            unschedulable=True,
        )
    size_ok = [v for v in type_ok if gang.gpus_per_worker <= v.state.spec.gpus_per_node]
    if not size_ok:
        largest = max(v.state.spec.gpus_per_node for v in type_ok)
        return GangNote(
            gang.job_id,
            f"a worker needs {gang.gpus_per_worker} GPUs; the largest fitting node has {largest}",
            unschedulable=True,
        )
    blocked = [v for v in size_ok if not v.state.available(now_s)]
    if len(blocked) == len(size_ok):
        names = ", ".join(v.state.name for v in blocked)
        return GangNote(gang.job_id, f"every fitting pool is backed off ({names})", False)
    return GangNote(
        gang.job_id,
        "fitting pools are at maxNodes or at the per-decision scale-up limit",
        unschedulable=False,
    )


def place_tightest(gang: Gang, views: Sequence[PoolView]) -> bool:
    """Place on the existing capacity the gang fits most tightly (the fewest GPUs left
    free on the nodes it lands on), ties to the first of ``views``. Like the scheduler's
    most-allocated scoring, this keeps roomy nodes (often grown for a larger gang, maybe
    in another pool) for the gangs that need them."""
    best: PoolView | None = None
    best_left = 0
    for v in views:
        if not v.state.spec.accepts(gang):
            continue
        chosen = place_workers(v.free, gang.workers, gang.gpus_per_worker)
        if chosen is None:
            continue
        used = set(chosen)
        left = sum(v.free[i] for i in used) - gang.total_gpus
        if best is None or left < best_left:
            best, best_left = v, left
    return best is not None and best.place(gang)


def provision_for(
    gangs: Sequence[Gang],
    views: Sequence[PoolView],
    config: PolicyConfig,
    now_s: float,
    *,
    place_first: bool = True,
) -> list[GangNote]:
    """Place each gang on existing capacity, else grow the first pool (by the expander)
    that can hold it. Gangs are all-or-nothing and stay within one pool.

    Existing capacity is tried in reverse expander order. Growth always goes to the most
    preferred pool, so a gang planned onto a less preferred pool's capacity stays there when
    the same snapshot is planned again with the new nodes in flight, instead of moving onto
    them and displacing the gang they were asked for."""
    notes: list[GangNote] = []
    for gang in gangs:
        ordered_views = pool_order(views, gang, config)
        if place_first and place_tightest(gang, ordered_views):
            continue
        grown = any(
            v.state.available(now_s) and v.grow_for(gang, config) > 0 for v in ordered_views
        )
        if not grown:
            notes.append(why_not(gang, views, now_s))
    return notes


def scale_ups(views: Sequence[PoolView], reason: str) -> list[ScaleUp]:
    """The growth planned so far beyond what :func:`ensure_min` added (it reports its own)."""
    out = []
    for v in views:
        start = v.live_nodes + v.added_for_min
        end = v.live_nodes + v.added
        if end > start:
            jobs = tuple(v.gangs_for_added)
            detail = reason
            if jobs:
                shown = ", ".join(jobs[:5]) + (
                    f" and {len(jobs) - 5} more" if len(jobs) > 5 else ""
                )
                detail = f"{reason}: {shown}"
            out.append(ScaleUp(v.state.name, start, end, detail, jobs))
    return out


def ensure_min(views: Sequence[PoolView]) -> list[ScaleUp]:
    """Plan the nodes each pool lacks to reach its minNodes. Called before pending gangs
    are placed, so that they use these nodes rather than grow another pool."""
    out = []
    for v in views:
        spec = v.state.spec
        short = spec.min_nodes - v.planned_nodes
        if short > 0:
            before = v.planned_nodes
            v.add_empty(short)
            v.added_for_min += short
            out.append(
                ScaleUp(spec.name, before, before + short, f"below minNodes ({spec.min_nodes})")
            )
    return out


def remove_idle(
    views: Sequence[PoolView],
    config: PolicyConfig,
    now_s: float,
    timeout_override_s: float | None = None,
) -> tuple[list[NodeRemoval], float | None]:
    """Remove ready nodes idle past their timeout, longest idle first, never below min and
    never a node a pending gang was placed on. Returns the removals and when the next
    idle node will expire."""
    removals: list[NodeRemoval] = []
    next_expiry: float | None = None
    for v in views:
        spec = v.state.spec
        timeout = timeout_override_s
        if timeout is None:
            timeout = (
                spec.idle_timeout_s if spec.idle_timeout_s is not None else config.idle_timeout_s
            )
        candidates = []
        index = {name: i for i, name in enumerate(v.names) if name}
        for node in v.state.nodes:
            if node.phase is not NodePhase.READY or node.used_gpus or node.idle_since_s is None:
                continue
            if index.get(node.name, -1) in v.reserved:
                continue
            expires = node.idle_since_s + timeout
            if expires <= now_s:
                candidates.append(node)
            elif next_expiry is None or expires < next_expiry:
                next_expiry = expires
        candidates.sort(key=lambda n: (n.idle_since_s or 0.0, n.name))
        above_min = v.planned_nodes - spec.min_nodes
        for node in candidates[: max(0, above_min)]:
            v.removed.add(node.name)
            removals.append(
                NodeRemoval(
                    spec.name,
                    node.name,
                    f"idle for {now_s - (node.idle_since_s or 0):.0f}s (timeout {timeout:.0f}s)",
                )
            )
    return removals, next_expiry


def enforce_max(views: Sequence[PoolView]) -> list[NodeRemoval]:
    """If maxNodes was lowered below the live count, remove idle nodes to get under it."""
    out = []
    for v in views:
        spec = v.state.spec
        excess = v.planned_nodes - spec.max_nodes
        if excess <= 0:
            continue
        idle = sorted(
            (
                n
                for n in v.state.nodes
                if n.phase is NodePhase.READY and not n.used_gpus and n.name not in v.removed
            ),
            key=lambda n: (n.idle_since_s or 0.0, n.name),
        )
        for node in idle[:excess]:
            v.removed.add(node.name)
            out.append(NodeRemoval(spec.name, node.name, f"above maxNodes ({spec.max_nodes})"))
    return out


def targets(views: Sequence[PoolView]) -> Mapping[str, int]:
    return {v.state.name: v.planned_nodes for v in views}
