"""Elastic gangs: grow into idle GPUs, shrink instead of scaling up.

An elastic job runs with any number of workers between its minimum and maximum. Two rules
decide when that number changes, both on one snapshot and with time as an argument (the
controller applies them after ``decide()``; the simulator can apply them the same way):

* **Grow.** A running elastic job below its maximum takes free GPUs on *ready* nodes of
  its own pool, as many workers as fit, when no gang that pool could run is waiting. Only
  capacity that already exists is used: growing never asks for a node.
* **Shrink.** A waiting gang for which the plan asks for new nodes is given GPUs of
  running elastic jobs above their minimum instead, when releasing workers of those jobs
  (in the pools that can run the gang, on the nodes it would land on) makes it fit. The
  scale-up for that gang is then dropped (:func:`without_scale_ups_for`). Workers are
  released only if the gang then fits: never to make partial room. A job shrinks only for
  a gang of at least its own priority, lowest priority first.

A resize restarts the gang with the new world size (how torch elastic and Horovod elastic
see membership changes), so each job is resized at most once per ``min_interval_s``.
GPUs still held by the workers of an earlier shrink (pods terminating) count as about to be
free, so a gang waiting for them is not scaled up for in the meantime.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from dlscaler.model import ANY_GPU_TYPE, Gang, NodePhase, PoolState
from dlscaler.placement import admission_key, nodes_needed, place_workers
from dlscaler.plan import Plan, ScaleUp

DEFAULT_MIN_INTERVAL_S = 300.0
"""Default minimum time between two resizes of one job (each one restarts its gang)."""

_NO_GPUS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ElasticGang:
    """A running elastic job as the resize rules see it."""

    job_id: str
    pool: str
    gpus_per_worker: int
    min_workers: int
    max_workers: int
    nodes: tuple[str, ...]
    """The node of each worker, by index (a node appears once per worker on it)."""
    gpu_type: str = ANY_GPU_TYPE
    priority: int = 0
    submit_s: float = 0.0
    last_resize_s: float | None = None
    """When it was last resized (``None``: never)."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_workers <= self.max_workers:
            raise ValueError(
                f"elastic job {self.job_id}: need 1 <= min_workers <= max_workers, "
                f"got {self.min_workers}..{self.max_workers}"
            )
        if not self.min_workers <= len(self.nodes) <= self.max_workers:
            raise ValueError(
                f"elastic job {self.job_id}: runs {len(self.nodes)} workers, outside "
                f"{self.min_workers}..{self.max_workers}"
            )
        if self.gpus_per_worker < 1:
            raise ValueError(
                f"elastic job {self.job_id}: gpus_per_worker must be >= 1, "
                f"got {self.gpus_per_worker}"
            )

    @property
    def workers(self) -> int:
        return len(self.nodes)

    def resizable(self, now_s: float, min_interval_s: float) -> bool:
        return (
            self.min_workers < self.max_workers
            and (self.last_resize_s is None or now_s - self.last_resize_s >= min_interval_s)
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Resize:
    job_id: str
    pool: str
    from_workers: int
    nodes: tuple[str, ...]
    """The node of each worker after the resize, by index."""
    reason: str
    made_room_for: tuple[str, ...] = ()
    """The waiting gangs a shrink is for (empty when growing)."""

    @property
    def to_workers(self) -> int:
        return len(self.nodes)

    @property
    def grows(self) -> bool:
        return self.to_workers > self.from_workers


@dataclass(frozen=True, slots=True)
class ElasticPlan:
    resizes: tuple[Resize, ...] = ()
    covered: tuple[str, ...] = ()
    """Waiting gangs that need no scale-up after all: elastic jobs shrink for them, or GPUs
    an earlier shrink released are about to be free for them."""


def plan_resizes(
    *,
    now_s: float,
    pools: Sequence[PoolState],
    elastic: Sequence[ElasticGang],
    pending: Sequence[Gang],
    scale_up_for: Collection[str] = (),
    releasing_gpus: Mapping[str, int] = _NO_GPUS,
    removing: Collection[str] = (),
    min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
) -> ElasticPlan:
    """Which elastic jobs to resize now, and which waiting gangs that makes room for.

    ``pools``: the pools as the policy saw them (GPUs of gangs admitted this pass already
    in use). ``pending``: every gang waiting for GPUs, in queue order. ``scale_up_for``: the
    ids of the gangs the plan grows a pool for (only those are made room for).
    ``releasing_gpus``: per node, GPUs held by workers on their way out (of an earlier
    shrink). ``removing``: nodes the plan removes (never grown into).
    """
    skip = set(removing)
    ready: dict[str, list[str]] = {}
    free: dict[str, int] = {}
    for pool in pools:
        names = [n.name for n in pool.nodes if n.phase is NodePhase.READY and n.name not in skip]
        ready[pool.name] = names
        for node in pool.nodes:
            if node.name in names:
                free[node.name] = max(0, node.free_gpus)
    current = {e.job_id: list(e.nodes) for e in elastic}
    elastic_by_id = {e.job_id: e for e in elastic}
    movable = [e for e in elastic if e.resizable(now_s, min_interval_s)]
    made_room: dict[str, list[str]] = {}
    covered: list[str] = []

    wanted = set(scale_up_for)
    soon = {n: free[n] + max(0, releasing_gpus.get(n, 0)) for n in free}
    by_price = sorted(pools, key=lambda p: admission_key(p.spec))
    for gang in pending:
        if gang.job_id not in wanted or gang.gpus_per_worker == 0:
            continue
        for pool in by_price:
            if not pool.spec.accepts(gang):
                continue
            room = _make_room(gang, ready[pool.name], soon, movable, current, pool.name)
            if room is None:
                continue
            placed, released = room
            for job_id, index in released:
                made_room.setdefault(job_id, []).append(gang.job_id)
                soon[current[job_id][index]] += elastic_by_id[job_id].gpus_per_worker
                current[job_id][index] = ""  # released; compacted below
            for name in placed:
                soon[name] -= gang.gpus_per_worker
            covered.append(gang.job_id)
            break

    resizes: list[Resize] = []
    for e in elastic:
        gangs = made_room.get(e.job_id)
        if gangs:
            kept = tuple(n for n in current[e.job_id] if n)
            shown = ", ".join(dict.fromkeys(gangs))
            reason = f"shrank from {e.workers} to {len(kept)} workers to make room for {shown}"
            resizes.append(Resize(e.job_id, e.pool, e.workers, kept, reason, tuple(gangs)))

    # Growth uses free GPUs only (not those still being released), in pools no waiting
    # gang could use: those GPUs are the waiting gangs' first.
    blocked = {p.name for p in pools for g in pending if p.spec.accepts(g)}
    order = sorted(movable, key=lambda e: (-e.priority, e.submit_s, e.job_id))
    for e in order:
        if e.job_id in made_room or e.pool in blocked or e.workers >= e.max_workers:
            continue
        names_ = ready.get(e.pool, [])
        room_ = [free[n] for n in names_]
        added: list[str] = []
        for _ in range(e.max_workers - e.workers):
            chosen = place_workers(room_, 1, e.gpus_per_worker)
            if chosen is None:
                break
            room_[chosen[0]] -= e.gpus_per_worker
            added.append(names_[chosen[0]])
        if not added:
            continue
        for n in added:
            free[n] -= e.gpus_per_worker
        nodes = (*e.nodes, *added)
        reason = f"grew from {e.workers} to {len(nodes)} workers into idle GPUs of pool {e.pool}"
        resizes.append(Resize(e.job_id, e.pool, e.workers, nodes, reason))
    return ElasticPlan(tuple(resizes), tuple(covered))


def _make_room(
    gang: Gang,
    nodes: Sequence[str],
    soon: Mapping[str, int],
    movable: Sequence[ElasticGang],
    current: Mapping[str, list[str]],
    pool: str,
) -> tuple[list[str], list[tuple[str, int]]] | None:
    """Where ``gang`` lands in ``pool`` and which elastic workers ``(job, index)`` must go
    for it to fit (``None``: it does not fit even with every releasable worker gone)."""
    room = {n: soon[n] for n in nodes}

    def fits() -> list[int] | None:
        return place_workers([room[n] for n in nodes], gang.workers, gang.gpus_per_worker)

    released: list[tuple[str, int, int]] = []  # (job, index, gpus)
    ok = fits() is not None
    # Never a job of higher priority than the gang; lowest priority first, then the job
    # with the most workers to spare.
    candidates = sorted(
        (e for e in movable if e.pool == pool and e.priority <= gang.priority),
        key=lambda e: (e.priority, -(_alive(current[e.job_id]) - e.min_workers), e.job_id),
    )
    for e in candidates:
        if ok:
            break
        workers = current[e.job_id]
        spare = _alive(workers) - e.min_workers
        for index in _release_order(workers, e.gpus_per_worker, room)[: max(0, spare)]:
            room[workers[index]] += e.gpus_per_worker
            released.append((e.job_id, index, e.gpus_per_worker))
            ok = fits() is not None
            if ok:
                break
    if not ok:
        return None
    # Give back what turned out not to be needed (an earlier job's workers that freed
    # GPUs on nodes the gang does not use).
    for item in list(reversed(released[:-1])):
        job_id, index, gpus = item
        room[current[job_id][index]] -= gpus
        if fits() is None:
            room[current[job_id][index]] += gpus
        else:
            released.remove(item)
    chosen = fits()
    if chosen is None:  # cannot happen: the last release made it fit and was kept
        return None
    return [nodes[i] for i in chosen], [(j, i) for j, i, _ in released]


def _alive(workers: Sequence[str]) -> int:
    return sum(1 for n in workers if n)


def _release_order(
    workers: Sequence[str], gpus_per_worker: int, room: Mapping[str, int]
) -> list[int]:
    """Worker indexes in the order to release them: node by node, those that would have the
    most free GPUs once this job's workers there are gone first (whole nodes free up
    sooner); among equals, the node of the highest index first, and on a node the highest
    index first (so rank 0 stays where it is if it can)."""
    on_node = Counter(n for n in workers if n)
    top: dict[str, int] = {}
    for i, n in enumerate(workers):
        if n:
            top[n] = i

    def key(i: int) -> tuple[int, int, int]:
        node = workers[i]
        return (-(room.get(node, 0) + on_node[node] * gpus_per_worker), -top[node], -i)

    return sorted((i for i, n in enumerate(workers) if n and n in room), key=key)


def without_scale_ups_for(
    plan: Plan, covered: Collection[str], pending: Sequence[Gang], pools: Sequence[PoolState]
) -> Plan:
    """``plan`` without the nodes it asked for the ``covered`` gangs.

    A scale-up only for covered gangs is dropped. One also for other gangs keeps at most
    the nodes those others need on fresh nodes of the pool (never more than it asked), so
    a shared scale-up does not grow for a gang that no longer needs it.
    """
    gone = set(covered)
    if not gone or not any(gone & set(up.job_ids) for up in plan.scale_ups):
        return plan
    gangs = {g.job_id: g for g in pending}
    specs = {p.name: p.spec for p in pools}
    targets = dict(plan.targets)
    ups: list[ScaleUp] = []
    for up in plan.scale_ups:
        left = tuple(j for j in up.job_ids if j not in gone)
        if len(left) == len(up.job_ids):
            ups.append(up)
            continue
        added = 0
        spec = specs.get(up.pool)
        if left and spec is not None:
            need = sum(
                nodes_needed(gangs[j].workers, gangs[j].gpus_per_worker, spec.gpus_per_node)
                for j in left
                if j in gangs
            )
            added = min(up.added_nodes, need)
        if up.pool in targets:
            targets[up.pool] -= up.added_nodes - added
        if added > 0:
            ups.append(replace(up, to_nodes=up.from_nodes + added, job_ids=left))
    return replace(plan, targets=MappingProxyType(targets), scale_ups=tuple(ups))
