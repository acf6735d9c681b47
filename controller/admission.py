"""Admission: which queued gangs start now, and on which ready nodes.

Exactly the simulator's rule (``simulator.runner.Simulation._admit``), so the two agree:
gangs are offered capacity in the configured queue order (``dlscaler.queueing``), each
tries the pools cheapest-per-GPU first, and is placed all-or-nothing, best fit, on the
free GPUs of *ready* nodes (``dlscaler.placement``). A gang that does not fit waits (and
the policy may grow a pool for it); later gangs may still start (backfill). An elastic
job starts with as many workers as fit, between its minimum and maximum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from controller.dljob import JobView
from dlscaler.config import PolicyConfig
from dlscaler.model import Gang, NodePhase, PoolState, RunningGang
from dlscaler.placement import admission_key, place_workers
from dlscaler.policy.reactive import running_gpus_by_queue
from dlscaler.queueing import offer_all


@dataclass(frozen=True, slots=True)
class Admission:
    job: JobView
    pool: str
    nodes: tuple[str, ...]
    """The node of each worker, by index."""

    @property
    def workers(self) -> int:
        return len(self.nodes)

    def gang(self) -> Gang:
        return self.job.gang(self.workers)


def admission_order(pools: Sequence[PoolState]) -> list[PoolState]:
    return sorted(pools, key=lambda p: admission_key(p.spec))


def admit(
    *,
    jobs: Sequence[JobView],
    pools: Sequence[PoolState],
    running: Sequence[RunningGang],
    config: PolicyConfig,
) -> list[Admission]:
    """The gangs of ``jobs`` (all queued and admissible) that start now, and where."""
    order = admission_order(pools)
    free: dict[str, list[int]] = {}
    names: dict[str, list[str]] = {}
    for pool in order:
        ready = [n for n in pool.nodes if n.phase is NodePhase.READY]
        free[pool.name] = [n.gpus - n.used_gpus for n in ready]
        names[pool.name] = [n.name for n in ready]
    by_id = {j.job_id: j for j in jobs}
    admitted: list[Admission] = []

    def offer(gang: Gang) -> bool:
        job = by_id[gang.job_id]
        for pool in order:
            if not pool.spec.accepts(gang):
                continue
            for workers in range(job.max_workers, job.min_workers - 1, -1):
                chosen = place_workers(free[pool.name], workers, job.gpus_per_worker)
                if chosen is None:
                    continue
                for i in chosen:
                    free[pool.name][i] -= job.gpus_per_worker
                nodes = tuple(names[pool.name][i] for i in chosen)
                admitted.append(Admission(job, pool.name, nodes))
                return True
        return False

    offer_all(
        [j.gang() for j in jobs],
        config.queue_ordering,
        offer,
        running_gpus_by_queue=running_gpus_by_queue(running),
        weights=config.fair_share_weights,
    )
    return admitted


def with_admissions(
    pools: Sequence[PoolState], admissions: Sequence[Admission]
) -> tuple[PoolState, ...]:
    """The pools as they are once the admitted workers hold their GPUs."""
    extra: dict[str, int] = {}
    for a in admissions:
        for node in a.nodes:
            extra[node] = extra.get(node, 0) + a.job.gpus_per_worker
    if not extra:
        return tuple(pools)
    out = []
    for pool in pools:
        nodes = tuple(
            replace(n, used_gpus=n.used_gpus + extra[n.name], idle_since_s=None)
            if n.name in extra
            else n
            for n in pool.nodes
        )
        out.append(replace(pool, nodes=nodes))
    return tuple(out)


def running_gang(job: JobView, pool: str, started_s: float, nodes: Sequence[str]) -> RunningGang:
    """``nodes``: the node of each worker (a node appears once per worker on it, as in the
    simulator)."""
    return RunningGang(
        gang=job.gang(len(nodes) or job.admitted_workers),
        started_s=started_s,
        pool=pool,
        nodes=tuple(nodes),
    )


def pools_by_name(pools: Sequence[PoolState]) -> Mapping[str, PoolState]:
    return {p.name: p for p in pools}
