"""Elastic DLJobs in a pass: the rules of :mod:`dlscaler.elastic` applied to the cluster as
the controller sees it, and the job steps that carry the resizes out. Pure, like
:mod:`controller.planning`, whose result it refines.

Two things keep a resize from racing the rest of the pass:

* Workers whose pod does not exist yet (a resized gang waits for its old pods, of the
  same names, to go) still hold the GPUs of the node reserved for them
  (:func:`reserved_workers`), so nothing else is admitted there meanwhile.
* GPUs the workers of a shrink still hold while their pods terminate are about to be free
  (:func:`releasing_gpus`): the gang the shrink made room for waits for them instead of
  being scaled up for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controller import lifecycle
from controller.clock import parse_time
from controller.dljob import ADMITTED, QUEUED, RUNNING, JobView, PodView
from controller.planning import PassPlan
from controller.snapshot import ClusterView, used_gpus_by_node
from dlscaler.elastic import DEFAULT_MIN_INTERVAL_S, ElasticGang, Resize, plan_resizes
from dlscaler.elastic import without_scale_ups_for as _without_scale_ups_for
from dlscaler.model import Gang, PoolState
from dlscaler.plan import Plan

GREW, SHRANK = "GrewIntoIdleCapacity", "ShrankToMakeRoom"

RELEASE_WINDOW_S = 600.0
"""After a resize, how long the pods it stopped count as about to free their GPUs. A pod
still terminating after this is stuck, and a gang waiting for its GPUs is provisioned for."""


@dataclass(frozen=True, slots=True)
class ElasticPass:
    plan: Plan
    """The pass's plan without the scale-ups the resizes made unnecessary."""
    steps: Mapping[str, lifecycle.JobStep] = field(default_factory=dict)
    """Per DLJob uid: the resize, in place of the job's own step of this pass."""
    resizes: tuple[Resize, ...] = ()

    @property
    def grown_nodes(self) -> set[str]:
        return {n for r in self.resizes if r.grows for n in r.nodes}


def _by_job(pods: Sequence[PodView]) -> dict[str, list[PodView]]:
    out: dict[str, list[PodView]] = defaultdict(list)
    for pod in pods:
        if pod.job_uid:
            out[pod.job_uid].append(pod)
    return out


def reserved_workers(jobs: Sequence[JobView], pods: Sequence[PodView]) -> list[PodView]:
    """Workers of admitted or running gangs whose pod does not exist yet, as pods pinned to
    the node reserved for them (without a job uid: no job's life reads them)."""
    by_job = _by_job(pods)
    out: list[PodView] = []
    for job in jobs:
        if job.phase not in (ADMITTED, RUNNING) or job.suspend:
            continue
        have = {p.index for p in by_job.get(job.uid, []) if p.attempt == job.attempt}
        for index, node in sorted(job.worker_nodes().items()):
            if index in have or index >= job.admitted_workers:
                continue
            out.append(
                PodView(
                    namespace=job.namespace,
                    name=f"{job.name}-worker-{index} (to be created)",
                    phase="Pending",
                    node_name="",
                    assigned_node=node,
                    gpus=job.gpus_per_worker,
                )
            )
    return out


def releasing_gpus(
    jobs: Sequence[JobView],
    pods: Sequence[PodView],
    pools: Sequence[PoolState],
    now_s: float,
) -> dict[str, int]:
    """Per node: GPUs that pods stopped by a recent resize still hold and that nothing else
    will hold once they are gone. ``pods`` include :func:`reserved_workers` (so a worker
    that moves back onto the same node keeps its GPUs)."""
    by_job = _by_job(pods)
    stale: dict[str, int] = defaultdict(int)
    for job in jobs:
        last = parse_time(job.status.get("lastResizeTime"))
        if last is None or now_s - last > RELEASE_WINDOW_S:
            continue
        for pod in by_job.get(job.uid, []):
            if pod.attempt != job.attempt and pod.active and pod.holds_node:
                stale[pod.holds_node] += pod.gpus
    if not stale:
        return {}
    capacity = {n.name: n.gpus for p in pools for n in p.nodes}
    used = used_gpus_by_node(pods)
    out: dict[str, int] = {}
    for node, gpus in stale.items():
        cap = capacity.get(node)
        if cap is None:
            continue
        freed = min(cap, used.get(node, 0)) - min(cap, max(0, used.get(node, 0) - gpus))
        if freed > 0:
            out[node] = freed
    return out


def elastic_gangs(
    jobs: Sequence[JobView],
    pods: Sequence[PodView],
    steps: Mapping[str, lifecycle.JobStep],
    view: ClusterView,
) -> list[ElasticGang]:
    """The running elastic jobs that may be resized this pass: every worker running, in
    one pool, and nothing else happening to the job (no transition in its step)."""
    by_job = _by_job(pods)
    out: list[ElasticGang] = []
    for job in jobs:
        if not job.elastic or job.phase != RUNNING or job.suspend or job.gpus_per_worker < 1:
            continue
        step = steps.get(job.uid)
        if step is None or step.delete_pods or step.create_workers or step.delete_job:
            continue
        if "phase" in step.status:
            continue
        current = [p for p in by_job.get(job.uid, []) if p.attempt == job.attempt]
        workers = job.admitted_workers
        if len(current) != workers or any(
            p.phase != "Running" or p.deleting or not p.node_name for p in current
        ):
            continue
        by_index = {p.index: p.node_name for p in current}
        nodes = tuple(by_index.get(i, "") for i in range(workers))
        pools = {view.node_pool.get(n, "") for n in nodes}
        if "" in nodes or len(pools) != 1 or "" in pools:
            continue
        if not job.min_workers <= workers <= job.max_workers:
            continue
        out.append(
            ElasticGang(
                job_id=job.job_id,
                pool=pools.pop(),
                gpus_per_worker=job.gpus_per_worker,
                min_workers=job.min_workers,
                max_workers=job.max_workers,
                nodes=nodes,
                gpu_type=job.gpu_type,
                priority=job.priority,
                submit_s=job.created_s,
                last_resize_s=parse_time(job.status.get("lastResizeTime")),
            )
        )
    return out


def plan_elastic(
    *,
    now_s: float,
    jobs: Sequence[JobView],
    pods: Sequence[PodView],
    decided: PassPlan,
    extra_pending: Sequence[Gang] = (),
    min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
) -> ElasticPass:
    """The resizes of this pass and the plan they leave. ``pods``: as the pass saw them,
    with :func:`reserved_workers`."""
    steps = decided.steps
    elastic = elastic_gangs(jobs, pods, steps, decided.view)
    releasing = releasing_gpus(jobs, pods, decided.pools, now_s)
    if not elastic and not releasing:
        return ElasticPass(decided.plan)
    # Every gang that wants GPUs: those the policy saw, and restarted gangs in their
    # backoff delay (their GPUs are not idle capacity).
    pending = [j.gang() for j in decided.waiting]
    pending += extra_pending
    pending += [
        j.gang()
        for j in jobs
        if str(steps[j.uid].status.get("phase", j.phase)) == QUEUED
        and not j.suspend
        and lifecycle.backing_off(j, steps[j.uid], now_s)
    ]
    plan = decided.plan
    result = plan_resizes(
        now_s=now_s,
        pools=decided.pools,
        elastic=elastic,
        pending=pending,
        scale_up_for={j for up in plan.scale_ups for j in up.job_ids},
        releasing_gpus=releasing,
        removing={r.node for r in plan.removals},
        min_interval_s=min_interval_s,
    )
    plan = _without_scale_ups_for(plan, result.covered, pending, decided.pools)
    by_id = {j.job_id: j for j in jobs}
    by_job = _by_job(pods)
    out: dict[str, lifecycle.JobStep] = {}
    for r in result.resizes:
        job = by_id[r.job_id]
        out[job.uid] = lifecycle.resize(
            job,
            by_job.get(job.uid, []),
            now_s,
            nodes=r.nodes,
            reason=GREW if r.grows else SHRANK,
            message=r.reason,
        )
    return ElasticPass(plan, out, result.resizes)
