"""When may a waiting gang start? An estimate for ``status.estimatedStartTime``.

A gang starts at the earliest of two things:

- **capacity freed or arriving**: GPUs free now on ready nodes, in-flight nodes when they are
  expected ready, and GPUs released by running gangs at their ``expected_end_s`` (the runtime
  regression's estimate; a gang whose end is unknown frees nothing). The scheduler's rule is
  replayed over these changes: at each one, the waiting gangs are offered the free GPUs in
  queue order, each all-or-nothing within one pool (cheapest per GPU first, as admission
  does), and a gang that does not fit is passed over for the next (backfill). A gang placed
  holds its GPUs from then on: its own end is not known yet.
- **a node boot**: for a gang that fits nowhere on the capacity free now or already on its
  way (what the reactive floor scales up for), ``now + provisioningDelaySeconds`` of the
  first pool (cheapest per GPU) that accepts it and can still grow, after its back-off if
  it has one; nodes booted for gangs ahead in the queue count against the pool's maxNodes.

Pure: time is an argument and nothing is read from anywhere else. The cost stays low on
large clusters: free GPUs are also kept as a count of nodes by free GPUs, so a gang that
cannot fit is turned away without looking at each node, and a gang shape turned away at
an instant is not tried again at that instant.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dlscaler.model import Gang, NodePhase, PoolState, RunningGang
from dlscaler.placement import admission_key, nodes_needed, place_workers
from dlscaler.queueing import iter_ordered


@dataclass(slots=True)
class _Free:
    """Free GPUs per node, and how many nodes have each number of them."""

    gpus: list[int]
    nodes_by_free: Counter[int] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.nodes_by_free.update(self.gpus)

    def add(self, i: int, gpus: int) -> None:
        self.nodes_by_free[self.gpus[i]] -= 1
        self.gpus[i] += gpus
        self.nodes_by_free[self.gpus[i]] += 1

    def room(self, gpus_per_worker: int) -> int:
        """Workers of that size that fit (identical workers fit best-fit exactly then)."""
        return sum(n * (f // gpus_per_worker) for f, n in self.nodes_by_free.items() if n > 0)

    def take(self, gang: Gang) -> bool:
        """Place the gang (all workers or none); True if it fit."""
        gpw = gang.gpus_per_worker
        if gpw and self.room(gpw) < gang.workers:
            return False
        chosen = place_workers(self.gpus, gang.workers, gpw)
        if chosen is None:
            return False
        for i in chosen:
            self.add(i, -gpw)
        return True


@dataclass(slots=True)
class _Pool:
    """One pool's nodes and the changes to come in their free GPUs."""

    state: PoolState
    index: dict[str, int] = field(default_factory=dict)
    free: list[int] = field(default_factory=list)
    """Free GPUs per node at the time the replay has reached (0 before a node is ready)."""
    arrivals: list[tuple[float, int, int]] = field(default_factory=list)
    """(time, node index, GPUs) of nodes on their way."""
    releases: list[tuple[float, int, int]] = field(default_factory=list)
    """(time, node index, GPUs) freed by running gangs at their expected ends."""
    booted: int = 0

    @classmethod
    def of(cls, state: PoolState, now_s: float) -> _Pool:
        p = cls(state=state)
        delay = state.spec.provisioning_delay_s
        for node in state.nodes:
            if node.phase is NodePhase.DRAINING:
                continue  # takes no new work
            i = p._node(node.name)
            if node.phase is NodePhase.READY:
                p.free[i] = node.gpus - node.used_gpus
            else:
                ready_s = node.expected_ready_s
                p.arrivals.append((now_s + delay if ready_s is None else ready_s, i, node.gpus))
        unlisted = state.in_flight_nodes - state.count(NodePhase.IN_FLIGHT)
        for k in range(unlisted):  # asked of the cloud, not listed yet
            i = p._node(f"(requested {k})")
            p.arrivals.append((now_s + delay, i, state.spec.gpus_per_node))
        return p

    def _node(self, name: str) -> int:
        self.index[name] = len(self.free)
        self.free.append(0)
        return len(self.free) - 1

    def release(self, running: RunningGang) -> None:
        if running.expected_end_s is None:
            return
        for name in running.nodes:  # one entry per worker
            i = self.index.get(name)
            if i is not None:
                gpus = running.gang.gpus_per_worker
                self.releases.append((running.expected_end_s, i, gpus))

    def on_its_way(self) -> _Free:
        """Free GPUs per node once the nodes asked for are ready (releases not counted)."""
        out = list(self.free)
        for _, i, gpus in self.arrivals:
            out[i] += gpus
        return _Free(out)

    def boot_s(self, gang: Gang, now_s: float) -> float | None:
        """When nodes booted for the gang now would be ready (counted against maxNodes), or
        None if the pool cannot run it or grow by that many."""
        spec = self.state.spec
        if not spec.accepts(gang):
            return None
        needed = nodes_needed(gang.workers, gang.gpus_per_worker, spec.gpus_per_node)
        if self.state.live_nodes + self.booted + needed > spec.max_nodes:
            return None
        self.booted += needed
        return max(now_s, self.state.unavailable_until_s or now_s) + spec.provisioning_delay_s


def estimated_starts(
    *,
    now_s: float,
    pools: Sequence[PoolState],
    running: Sequence[RunningGang],
    waiting: Sequence[Gang],
    ordering: str = "fifo",
    max_gangs: int = 1_000,
) -> Mapping[str, float | None]:
    """Job id -> estimated start time of each waiting gang; ``None`` when there is none (no
    pool runs it, or it waits on capacity whose release time is unknown).

    ``ordering``: the queue ordering (``fair-share`` is taken in submit order). Gangs past
    ``max_gangs`` in the queue get ``None``: it bounds the cost on a very long queue.
    """
    order = sorted(pools, key=lambda p: admission_key(p.spec))
    by_pool = {p.name: _Pool.of(p, now_s) for p in order}
    for r in running:
        pool = by_pool.get(r.pool)
        if pool is not None:
            pool.release(r)
    queue = list(iter_ordered(waiting, ordering))
    out: dict[str, float | None] = {g.job_id: None for g in queue[max_gangs:]}
    queue = queue[:max_gangs]

    # Boots: as the reactive floor does, for the gangs that fit nowhere on the capacity
    # free now or on its way, in queue order.
    boot: dict[str, float] = {}
    planned = {name: p.on_its_way() for name, p in by_pool.items()}
    for gang in queue:
        if any(
            p.state.spec.accepts(gang) and planned[name].take(gang) for name, p in by_pool.items()
        ):
            continue
        for p in by_pool.values():
            ready_s = p.boot_s(gang, now_s)
            if ready_s is not None:
                boot[gang.job_id] = ready_s
                break

    # Replay the scheduler over the changes to come, boots included as instants.
    changes: list[tuple[float, str, int, int]] = [
        (t, name, i, gpus)
        for name, p in by_pool.items()
        for t, i, gpus in (*p.arrivals, *p.releases)
    ]
    heapq.heapify(changes)
    instants = sorted({now_s, *boot.values(), *(max(now_s, c[0]) for c in changes)})
    free = {name: _Free(p.free) for name, p in by_pool.items()}
    accepting = {
        g.job_id: [name for name, p in by_pool.items() if p.state.spec.accepts(g)] for g in queue
    }
    left = list(queue)
    for t in instants:
        while changes and changes[0][0] <= t:
            _, name, i, gpus = heapq.heappop(changes)
            free[name].add(i, gpus)
        still: list[Gang] = []
        turned_away: set[tuple[tuple[str, ...], int, int]] = set()
        for gang in left:
            booted_s = boot.get(gang.job_id)
            pools_ = accepting[gang.job_id]
            shape = (tuple(pools_), gang.workers, gang.gpus_per_worker)
            if booted_s is not None and booted_s <= t:
                out[gang.job_id] = booted_s  # its own new nodes: takes nothing from others
            elif shape not in turned_away and any(free[n].take(gang) for n in pools_):
                out[gang.job_id] = t
            else:
                turned_away.add(shape)  # free GPUs only shrink for the rest of this instant
                still.append(gang)
        left = still
        if not left:
            break
    for gang in left:
        out[gang.job_id] = boot.get(gang.job_id)
    return out
