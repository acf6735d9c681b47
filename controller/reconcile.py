"""The scaling loop: read the cluster, decide, act. One pass is :meth:`Reconciler.run_once`.

A pass (run in a worker thread, never on the event loop):

1. reads DLJobs, NodePools, Nodes and pods, and asks every pool's provider for its group
   (in parallel; a slow pool is described from its last answer);
2. moves each admitted job along its life (:mod:`controller.lifecycle`);
3. builds the policy's view of the pools (:mod:`controller.snapshot`), admits the queued
   gangs that fit on ready nodes (:mod:`controller.admission`, the simulator's rule), and
   calls ``dlscaler.policy.decide`` with the rest, exactly as the simulator does;
4. applies the plan: scale-ups through the providers (threads, bounded waits: one failing
   or hanging pool never holds up another), drains and removals of the named nodes,
   consolidation's cordons and uncordons, job pods, statuses, conditions and Events saying
   why;
5. records the demand for the forecaster and the metrics.

Every pass starts from what the cluster and the clouds say *now*, so a restarted
controller simply continues: nodes already asked for are in the provider's target and are
counted as in flight, never asked for twice.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from typing import Any

from controller import drain, gang, lifecycle, resizing
from controller.admission import Admission
from controller.cache import ObjectCache
from controller.clock import format_time, parse_time
from controller.dljob import ADMITTED, QUEUED, RUNNING, JobView, parse_dljob, parse_pod
from controller.dlservice import parse_dlservice, pending_gangs
from controller.events import EventRecorder
from controller.forecasting import Forecasting
from controller.idle import IdleTracker, last_finish_by_node
from controller.kube import ApiError, Kube, core_path, custom_path, group_path, list_in_namespaces
from controller.metrics import Metrics
from controller.names import (
    API_VERSION,
    DLJOBS,
    DLSERVICES,
    JOB_UID_LABEL,
    NODEPOOLS,
    SERVICE_LABEL,
)
from controller.planning import plan_pass
from controller.pools import PoolManager
from controller.prometheus import Prometheus
from controller.runtimes import SUFFIX as RUNTIMES_SUFFIX
from controller.runtimes import FinishedJobStore, RuntimeEstimates
from controller.serving import ServiceReconciler
from controller.settings import ControllerSettings
from controller.snapshot import ClusterView, NodeView, parse_node, used_gpus_by_node
from controller.state import DemandHistory, StateStore
from dlscaler.elastic import Resize
from dlscaler.estimate import estimated_starts
from dlscaler.model import PoolSpec, PoolState, RunningGang
from dlscaler.plan import NodeCordon, Plan

log = logging.getLogger("dlscaler.reconcile")

Obj = dict[str, Any]
NORMAL, WARNING = "Normal", "Warning"


@dataclass(slots=True)
class ClusterObjects:
    jobs: list[Obj]
    nodepools: list[Obj]
    nodes: list[Obj]
    pods: list[Obj]
    services: list[Obj] = field(default_factory=list)
    deployments: list[Obj] = field(default_factory=list)


@dataclass(slots=True)
class PassResult:
    next_wake_s: float
    plan: Plan
    admitted: list[str] = field(default_factory=list)
    seconds: float = 0.0


CACHED_KINDS = ("DLJob", "DLService", "Node")
"""Kinds read from the watch-fed cache (they grow with the cluster); the rest are listed
each pass (NodePools are few; pods are listed filtered, cluster-wide, since every active
pod's GPUs count, which the namespaced watches do not cover)."""


def _list_kind(kube: Kube, settings: ControllerSettings, kind: str) -> list[Obj]:
    spaces = settings.namespaces
    if kind == "DLJob":
        return list_in_namespaces(kube, lambda ns: custom_path(DLJOBS, ns), spaces)
    if kind == "DLService":
        return list_in_namespaces(kube, lambda ns: custom_path(DLSERVICES, ns), spaces)
    return kube.list(core_path("nodes"))


def read_cluster(
    kube: Kube,
    settings: ControllerSettings,
    io: ThreadPoolExecutor,
    *,
    nodepools: list[Obj],
    cache: ObjectCache | None = None,
) -> ClusterObjects:
    """Everything a pass needs: from the cache where it is synced, the rest listed in
    parallel."""
    spaces = settings.namespaces
    kinds: dict[str, Future[list[Obj]]] = {}
    for kind in CACHED_KINDS:
        if cache is None or not cache.synced(kind, settings.resync_s):
            kinds[kind] = io.submit(_list_kind, kube, settings, kind)
    # Every active pod holds capacity (ours or not); ours are needed in any phase.
    active_f = io.submit(
        kube.list, core_path("pods"), field_selector="status.phase!=Succeeded,status.phase!=Failed"
    )
    ours_f = io.submit(
        list_in_namespaces,
        kube,
        lambda ns: core_path("pods", ns),
        spaces,
        label_selector=JOB_UID_LABEL,
    )
    found: dict[str, list[Obj]] = {}
    for kind in CACHED_KINDS:
        if kind in kinds:
            found[kind] = kinds[kind].result()
            if cache is not None:
                cache.replace(kind, found[kind])
        else:
            assert cache is not None
            found[kind] = cache.items(kind)
    services = found["DLService"]
    deployments: list[Obj] = []
    if services:
        deployments = list_in_namespaces(
            kube,
            lambda ns: group_path("apps/v1", "deployments", ns),
            spaces,
            label_selector=SERVICE_LABEL,
        )
    pods: dict[str, Obj] = {}
    for pod in [*active_f.result(), *ours_f.result()]:
        pods[pod["metadata"]["uid"]] = pod
    for kind, objs in (("DLJob", found["DLJob"]), ("DLService", services)):
        for obj in objs:
            obj.setdefault("apiVersion", API_VERSION)
            obj.setdefault("kind", kind)
    return ClusterObjects(
        found["DLJob"], nodepools, found["Node"], list(pods.values()), services, deployments
    )


def list_nodepools(kube: Kube, settings: ControllerSettings) -> list[Obj]:
    pools = kube.list(custom_path(NODEPOOLS), label_selector=settings.nodepool_selector)
    for pool in pools:
        pool.setdefault("apiVersion", API_VERSION)
        pool.setdefault("kind", "NodePool")
    return pools


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        settings: ControllerSettings,
        *,
        metrics: Metrics,
        events: EventRecorder,
        pools: PoolManager,
        forecasting: Forecasting | None = None,
        store: StateStore | None = None,
        cache: ObjectCache | None = None,
        clock: Callable[[], float] = time.time,
        runtimes: RuntimeEstimates | None = None,
    ) -> None:
        """``cache``: watch-fed objects (:mod:`controller.cache`); without one, every pass
        lists everything."""
        self.kube = kube
        self.settings = settings
        self.config = settings.policy
        self.metrics = metrics
        self.events = events
        self.pools = pools
        self.forecasting = forecasting or Forecasting(self.config)
        self.store = store
        # Running gangs' expected ends; finished jobs kept beside the demand history.
        self.runtimes = runtimes or RuntimeEstimates(
            store=FinishedJobStore(kube, store.namespace, store.name + RUNTIMES_SUFFIX)
            if store is not None
            else None
        )
        self.cache = cache
        self.clock = clock
        self.idle = IdleTracker()
        self.io = ThreadPoolExecutor(max_workers=16, thread_name_prefix="kube-io")
        self.history = DemandHistory(
            step_s=settings.history_step_s, max_points=settings.history_points
        )
        self.history_loaded = False
        self._saved_s = 0.0
        self.passes = 0
        prom = Prometheus(settings.prometheus_url) if settings.prometheus_url else None
        self.serving = ServiceReconciler(
            kube, events, prometheus=prom, window_s=settings.service_window_s, clock=clock
        )

    def close(self) -> None:
        self.io.shutdown(wait=False, cancel_futures=True)
        self.forecasting.close()
        self.runtimes.close()
        self.pools.close()

    # --- state across restarts ------------------------------------------------------------

    def load_history(self) -> None:
        if self.store is None or self.history_loaded:
            return
        try:
            self.history = self.store.load(
                step_s=self.settings.history_step_s, max_points=self.settings.history_points
            )
            self.history_loaded = True
            self.forecasting.restore_arrivals(self.store.arrivals_text, self.clock())
            log.info(
                "demand history: %d points from ConfigMap %s/%s",
                len(self.history.values),
                self.store.namespace,
                self.store.name,
            )
        except ApiError as err:
            log.warning("could not read the demand history (starting empty): %s", err)

    def save_history(self, *, force: bool = False) -> None:
        now = self.clock()
        if self.store is None or not self.history.values:
            return
        if not force and now - self._saved_s < self.settings.persist_every_s:
            return
        try:
            self.store.save(self.history, arrivals=self.forecasting.arrivals_record(now))
            self._saved_s = now
        except ApiError as err:
            log.warning("could not save the demand history: %s", err)

    # --- one pass -------------------------------------------------------------------------

    def run_once(self) -> PassResult:
        started = time.perf_counter()
        marks: list[tuple[str, float]] = []

        def mark(phase: str) -> None:
            marks.append((phase, time.perf_counter()))

        now = self.clock()
        self.load_history()
        nodepools = list_nodepools(self.kube, self.settings)
        self.pools.sync(nodepools, now)
        describing = self.pools.start_describe()  # the clouds answer while we read
        objs = read_cluster(
            self.kube, self.settings, self.io, nodepools=nodepools, cache=self.cache
        )
        mark("read")
        self.pools.finish_describe(describing, now)
        mark("describe")
        nodes = [parse_node(n) for n in objs.nodes]
        pods = [parse_pod(p) for p in objs.pods]
        jobs = [parse_dljob(j) for j in objs.jobs]
        pods += resizing.reserved_workers(jobs, pods)  # workers whose pods are yet to come
        services = [parse_dlservice(s) for s in objs.services]
        serving_pending = pending_gangs(services, pods)
        used = used_gpus_by_node(pods)
        idle = self.idle.update(now, nodes, used, last_finish_by_node(pods))
        self.forecasting.update(self.history, now)
        self.forecasting.observe_arrivals(jobs, services, now)
        forecast = self.forecasting.forecast(
            now, [rt.model for rt in self.pools.valid() if rt.model]
        )
        self.runtimes.observe(jobs)
        decided = plan_pass(
            now_s=now,
            jobs=jobs,
            pods=pods,
            nodes=nodes,
            pools=self.pools.inputs(now),
            idle_since=idle,
            config=self.config,
            forecast=forecast,
            max_provisioning_s=self.settings.max_provisioning_s,
            back_off=lambda name, reason: self.pools.back_off(name, reason, now),
            timer=time.perf_counter,
            extra_pending=serving_pending,
            unschedulable_after_s=self.settings.worker_schedule_timeout_s,
            restart_backoff=lifecycle.RestartBackoff(
                self.settings.restart_backoff_s, self.settings.restart_backoff_max_s
            ),
            expected_ends=lambda gangs: self.runtimes.expected_ends(gangs, jobs, now),
        )
        self.metrics.decide_latency.observe(decided.decide_s)
        mark("plan")
        view, plan, steps = decided.view, decided.plan, dict(decided.steps)
        admissions, waiting, running = decided.admissions, decided.waiting, decided.running
        self.idle.mark_busy(n for a in admissions for n in a.nodes)
        # Elastic jobs grow into idle GPUs, or shrink so that a waiting gang needs no node.
        elastic = resizing.plan_elastic(
            now_s=now,
            jobs=jobs,
            pods=pods,
            decided=decided,
            extra_pending=serving_pending,
            min_interval_s=self.settings.elastic_resize_interval_s,
        )
        plan = elastic.plan
        steps.update(elastic.steps)
        self.idle.mark_busy(elastic.grown_nodes)
        self._note_waiting(waiting, plan, decided.pools, now, steps, running)
        writes = self._apply_jobs(jobs, steps, admissions, view)
        calls = self._repair_stuck(view)
        calls += self._scale_up(plan, view)
        writes += self._remove(plan, view, now)
        awaiting = drain.awaiting_workers(
            pods, [n for a in admissions for n in a.nodes] + list(elastic.grown_nodes)
        )
        writes += self._consolidate(plan, nodes, view, now, awaiting)
        calls += self._continue_drains(nodes, view, now)
        writes += self._apply_services(services, objs.deployments, [p.spec for p in decided.pools])
        wait_futures(writes)
        mark("writes")
        retry_soon = self._settle(calls)
        mark("provider-calls")
        self._write_pool_status(view, now)
        mark("pool-status")

        serving = sum(p.gpus for p in pods if p.service and p.node_name and p.active)
        demand = (
            sum(r.gang.total_gpus for r in running)
            + sum(j.gang().total_gpus for j in waiting)
            + sum(g.total_gpus for g in serving_pending)
            + serving
        )
        self.history.observe(now, demand)
        self.save_history()
        self._record_metrics(
            view, plan, forecast.quantiles, waiting, jobs, steps, demand, elastic.resizes
        )

        wakes = [now + self.settings.interval_s]
        if plan.next_decision_s is not None:
            wakes.append(plan.next_decision_s)
        wakes += [s.wake_at_s for s in steps.values() if s.wake_at_s is not None]
        if (
            retry_soon
            or admissions
            or any(s.create_workers or s.delete_pods for s in steps.values())
        ):
            wakes.append(now)  # a pool backed off, or gangs changed: look again at once
        self.passes += 1
        seconds = time.perf_counter() - started
        self.metrics.reconcile_latency.observe(seconds)
        if seconds > max(1.0, self.settings.interval_s / 2):
            last, spent = started, []
            for phase, at in marks:
                spent.append(f"{phase} {at - last:.2f}s")
                last = at
            log.info(
                "slow pass (%.1f s): %s; %d jobs, %d pools, %d nodes",
                seconds,
                ", ".join(spent),
                len(jobs),
                len(view.pools),
                len(nodes),
            )
        return PassResult(min(wakes), plan, sorted(a.job.job_id for a in admissions), seconds)

    # --- services -------------------------------------------------------------------------

    def _apply_services(
        self, services: Sequence[Any], deployments: Sequence[Obj], pools: Sequence[PoolSpec]
    ) -> list[Future[Any]]:
        """``pools``: every managed NodePool, for the services' ``Schedulable`` condition."""
        by_name = {(d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in deployments}
        self.serving.stabilizer.forget({s.key for s in services})
        return [
            self.io.submit(self.serving.reconcile, s, by_name.get((s.namespace, s.name)), pools)
            for s in services
        ]

    # --- jobs -----------------------------------------------------------------------------

    def _apply_jobs(
        self,
        jobs: Sequence[JobView],
        steps: Mapping[str, lifecycle.JobStep],
        admissions: Sequence[Admission],
        view: ClusterView,
    ) -> list[Future[Any]]:
        futures: list[Future[Any]] = []
        for job in jobs:
            step = steps[job.uid]
            if step.status or step.create_workers or step.delete_pods or step.delete_job:
                futures.append(self.io.submit(self._job_step, job, step, view))
        for a in admissions:
            futures.append(self.io.submit(self._admit, a, view))
        return futures

    def _job_step(self, job: JobView, step: lifecycle.JobStep, view: ClusterView) -> None:
        try:
            if step.delete_job:
                self.kube.delete(custom_path(DLJOBS, job.namespace, job.name))
                return
            for name in step.delete_pods:
                self.kube.delete(core_path("pods", job.namespace, name))
            if step.status:
                self._patch_job_status(job, step.status)
            for ev in step.events:
                self.events.record(job.obj, ev.type, ev.reason, ev.message)
            if step.create_workers:
                # As the step leaves the job (a resize changes its workers and attempt).
                job = replace(job, status={**job.status, **step.status})
                nodes = job.worker_nodes()
                self._create_workers(job, step.create_workers, nodes, view)
        except ApiError as err:
            log.warning("DLJob %s: %s", job.job_id, err)

    def _admit(self, a: Admission, view: ClusterView) -> None:
        job = a.job
        now = self.clock()
        workers = a.workers
        states = [
            {"index": i, "nodeName": node, "phase": "Pending"} for i, node in enumerate(a.nodes)
        ]
        msg = f"admitted: {workers} workers on {len(set(a.nodes))} nodes of pool {a.pool}"
        status: dict[str, Any] = {
            "phase": ADMITTED,
            "admittedTime": format_time(now),
            "workers": workers,
            "gpus": workers * job.gpus_per_worker,
            "workerStates": states,
            "estimatedStartTime": None,
            "message": msg,
        }
        step = lifecycle.JobStep(status=status)
        lifecycle.set_conditions(
            job,
            step,
            lifecycle.condition("Queued", False, "Admitted", msg, now, job),
            lifecycle.condition("Admitted", True, "CapacityFound", msg, now, job),
            lifecycle.condition("Schedulable", True, "Admitted", msg, now, job),
        )
        try:
            self._patch_job_status(job, step.status)
            # The workers find each other through the Service: it exists before they do.
            self.kube.create_or_get(core_path("services", job.namespace), gang.render_service(job))
        except ApiError as err:
            log.warning("DLJob %s: admission not written: %s", job.job_id, err)
            return
        self.events.record(job.obj, NORMAL, "Admitted", msg)
        admitted = replace(job, status={**job.status, **status})
        self._create_workers(admitted, list(range(workers)), dict(enumerate(a.nodes)), view)

    def _create_workers(
        self, job: JobView, indexes: Sequence[int], nodes: Mapping[int, str], view: ClusterView
    ) -> None:
        workers = job.admitted_workers
        taints = self._pool_taints(view)
        for i in indexes:
            node = nodes.get(i)
            if not node:
                log.warning("DLJob %s: worker %d has no node assigned", job.job_id, i)
                continue
            pool = view.node_pool.get(node, "")
            pod = gang.render_worker(
                job, i, workers=workers, node=node, pool=pool, pool_taints=taints.get(pool, ())
            )
            try:
                self.kube.create_or_get(core_path("pods", job.namespace), pod)
            except ApiError as err:
                if err.status in (400, 422):
                    self._reject(
                        job, f"worker pod {pod['metadata']['name']} was rejected: {err.message}"
                    )
                    return
                raise

    def _reject(self, job: JobView, message: str) -> None:
        now = self.clock()
        step = lifecycle.JobStep()
        step.status.update(phase="Failed", completionTime=format_time(now), message=message)
        lifecycle.set_conditions(
            job, step, lifecycle.condition("Failed", True, "InvalidTemplate", message, now, job)
        )
        self._patch_job_status(job, step.status)
        self.events.record(job.obj, WARNING, "InvalidTemplate", message)

    def _pool_taints(self, view: ClusterView) -> dict[str, tuple[str, ...]]:
        return {p.name: p.spec.taints for p in view.pools}

    def _patch_job_status(self, job: JobView, status: Mapping[str, Any]) -> None:
        body = {"status": {**status, "observedGeneration": job.generation}}
        reply = self.kube.merge_patch(custom_path(DLJOBS, job.namespace, job.name, "status"), body)
        if self.cache is not None and reply.get("metadata"):
            self.cache.upsert("DLJob", reply)  # the next pass sees it, watch event or not

    def _note_waiting(
        self,
        waiting: Sequence[JobView],
        plan: Plan,
        pools: Sequence[PoolState],
        now: float,
        steps: dict[str, lifecycle.JobStep],
        running: Sequence[RunningGang] = (),
    ) -> None:
        """Conditions and Events for gangs still queued: why they wait, when they may start.
        Added to the job's step of this pass (a new job's first status included).

        The estimated start is the earliest of a node boot and the capacity that running
        gangs free at their expected ends, taken in queue order
        (:func:`dlscaler.estimate.estimated_starts`)."""
        notes = {n.job_id: n for n in plan.notes}
        ups = {jid: up for up in plan.scale_ups for jid in up.job_ids}
        starts = estimated_starts(
            now_s=now,
            pools=pools,
            running=running,
            waiting=[job.gang() for job in waiting],
            ordering=self.config.queue_ordering,
        )
        for job in waiting:
            note = notes.get(job.job_id)
            up = ups.get(job.job_id)
            estimate: float | None = None
            event: tuple[str, str, str] | None = None
            if note is not None and note.unschedulable:
                cond = ("Schedulable", False, "NoFittingPool", note.reason)
                event = (WARNING, "Unschedulable", note.reason)
            elif note is not None:
                cond = ("Schedulable", True, "WaitingForCapacity", note.reason)
                event = (NORMAL, "WaitingForCapacity", note.reason)
            elif up is not None:
                message = f"pool {up.pool}: {up.from_nodes} -> {up.to_nodes} nodes"
                cond = ("Schedulable", True, "ScaleUpRequested", message)
                event = (NORMAL, "TriggeredScaleUp", message)
            else:
                cond = (
                    "Schedulable",
                    True,
                    "WaitingForNodes",
                    "fits on nodes already being provisioned or freed",
                )
            if note is None or not note.unschedulable:
                estimate = starts.get(job.job_id)
            old = job.condition("Schedulable")
            if (
                cond[2] == "WaitingForNodes"
                and old is not None
                and old.get("reason") == "ScaleUpRequested"
            ):
                continue  # the nodes asked for it are on their way: nothing new to say
            same = old is not None and (
                old.get("status"),
                old.get("reason"),
                old.get("message"),
            ) == (
                "True" if cond[1] else "False",
                cond[2],
                cond[3],
            )
            old_estimate = parse_time(job.status.get("estimatedStartTime"))
            estimate_changed = estimate is not None and (
                old_estimate is None or abs(old_estimate - estimate) > 60
            )
            if same and not estimate_changed:
                continue
            step = steps.setdefault(job.uid, lifecycle.JobStep())
            if not same:
                lifecycle.set_conditions(job, step, lifecycle.condition(*cond, now, job))
                step.status["message"] = cond[3]
                if event is not None:
                    step.event(*event)
            if estimate_changed and estimate is not None:
                step.status["estimatedStartTime"] = format_time(estimate)

    # --- pools ----------------------------------------------------------------------------

    def _scale_up(self, plan: Plan, view: ClusterView) -> list[tuple[Future[Any], str, str]]:
        calls: list[tuple[Future[Any], str, str]] = []
        for up in plan.scale_ups:
            rt = self.pools.pools.get(up.pool)
            desc = rt.description if rt else None
            if rt is None or desc is None:
                continue
            # Relative to the cloud's own target: draining and stuck nodes it still counts
            # must not be given up by setting an absolute number.
            target = min(desc.target_size + up.added_nodes, desc.max_size)
            if target <= desc.target_size:
                continue

            def grow(provider: Any, size: int = target) -> None:
                provider.set_target_size(size)

            fut = self.pools.submit(up.pool, "scale-up", grow, asked_target=target)
            if fut is None:
                continue
            what = f"{up.from_nodes} -> {up.to_nodes} nodes (target {target}): {up.reason}"
            calls.append((fut, up.pool, what))
        return calls

    def _repair_stuck(self, view: ClusterView) -> list[tuple[Future[Any], str, str]]:
        """Give back nodes that never became ready (the pool is already backed off)."""
        calls: list[tuple[Future[Any], str, str]] = []
        for name, obs in view.observations.items():
            if not obs.stuck:
                continue
            rt = self.pools.pools.get(name)
            if rt is None or rt.description is None:
                continue
            pids = list(obs.stuck_provider_ids)
            lower_to = rt.description.target_size - obs.stuck_unlisted

            def repair(
                provider: Any,
                pids: list[str] = pids,
                lower_to: int = lower_to,
                unlisted: int = obs.stuck_unlisted,
            ) -> None:
                if pids:
                    provider.delete_instances(pids)
                if unlisted:
                    provider.set_target_size(max(0, lower_to - len(pids)))

            fut = self.pools.submit(name, "repair", repair)
            if fut is None:
                continue
            message = (
                f"{obs.stuck} nodes not ready after {self.settings.max_provisioning_s:.0f} s: "
                "giving them back and preferring other pools for a while"
            )
            self.events.record(rt.obj, WARNING, "ProvisioningTimeout", message)
            calls.append((fut, name, "give back stuck nodes"))
        return calls

    def _remove(self, plan: Plan, view: ClusterView, now: float) -> list[Future[Any]]:
        futures = []
        for removal in plan.removals:
            rt = self.pools.pools.get(removal.pool)
            if rt is None:
                continue

            def start(removal: Any = removal, obj: Any = rt.obj) -> None:
                why_not = drain.start(self.kube, removal.node, now)
                if why_not:
                    log.info("not removing %s: %s", removal.node, why_not)
                    return
                self.events.record(
                    obj, NORMAL, "ScaleDown", f"draining {removal.node}: {removal.reason}"
                )

            futures.append(self.io.submit(start))
        return futures

    def _consolidate(
        self,
        plan: Plan,
        nodes: Sequence[NodeView],
        view: ClusterView,
        now: float,
        awaiting: Collection[str],
    ) -> list[Future[Any]]:
        """Consolidation (:mod:`controller.drain`): the plan's cordons and uncordons, and the
        cordoned nodes now empty handed to the drain that removes idle nodes. ``awaiting``:
        nodes with a worker not yet bound, not cordoned yet (the scheduler would refuse it)."""
        futures: list[Future[Any]] = []

        def submit(pool: str, act: Callable[[Any], None]) -> None:
            rt = self.pools.pools.get(pool)
            if rt is None:
                return

            def run(obj: Any = rt.obj) -> None:
                try:
                    act(obj)
                except ApiError as err:
                    log.warning("consolidation in pool %s: %s", pool, err)

            futures.append(self.io.submit(run))

        for back in plan.uncordons:

            def put_back(obj: Any, back: NodeCordon = back) -> None:
                if not drain.uncordon(self.kube, back.node):
                    log.info("not uncordoning %s: not cordoned for consolidation", back.node)
                    return
                message = f"{back.node} back in service: {back.reason}"
                self.events.record(obj, NORMAL, "Uncordoned", message)

            submit(back.pool, put_back)
        for c in plan.cordons:
            if c.node in awaiting:
                log.info("not cordoning %s yet: a worker placed there is not bound", c.node)
                continue

            def take_out(obj: Any, c: NodeCordon = c) -> None:
                drain.cordon(self.kube, c.node, now)
                message = f"cordoned {c.node} (nothing evicted; removed once empty): {c.reason}"
                self.events.record(obj, NORMAL, "Cordoned", message)

            submit(c.pool, take_out)
        for node in drain.emptied(nodes, view.used_gpus):

            def remove(obj: Any, name: str = node.name) -> None:
                why_not = drain.start(self.kube, name, now)
                if why_not:
                    log.info("not removing %s yet: %s", name, why_not)
                    return
                message = f"draining {name}: cordoned to consolidate, and now empty"
                self.events.record(obj, NORMAL, "ScaleDown", message)

            submit(view.node_pool.get(node.name, ""), remove)
        for node in drain.stale_marks(nodes):

            def forget(obj: Any, name: str = node.name) -> None:
                del obj
                drain.forget(self.kube, name)  # someone put it back in service

            submit(view.node_pool.get(node.name, ""), forget)
        return futures

    def _continue_drains(
        self, nodes: Sequence[NodeView], view: ClusterView, now: float
    ) -> list[tuple[Future[Any], str, str]]:
        ready_to_delete: dict[str, list[str]] = defaultdict(list)
        for node in nodes:
            pool = view.node_pool.get(node.name)
            if node.draining_since_s is None or pool is None or node.deleting:
                continue
            rt = self.pools.pools.get(pool)
            if rt is None:
                continue
            try:
                if now - node.draining_since_s > self.settings.max_drain_s:
                    drain.stop(self.kube, node.name)
                    self.events.record(
                        rt.obj,
                        WARNING,
                        "DrainTimeout",
                        f"gave up draining {node.name} after "
                        f"{self.settings.max_drain_s:.0f} s; uncordoned",
                    )
                    continue
                progress = drain.progress(self.kube, node.name)
            except ApiError as err:
                log.warning("draining %s: %s", node.name, err)
                continue
            if progress.aborted:
                self.events.record(
                    rt.obj, NORMAL, "ScaleDownCancelled", f"{node.name}: {progress.message}"
                )
            elif progress.done and node.provider_id:
                ready_to_delete[pool].append(node.provider_id)
            elif not progress.done and progress.message:
                log.info("draining %s: %s", node.name, progress.message)
        calls: list[tuple[Future[Any], str, str]] = []
        for pool, pids in ready_to_delete.items():

            def remove(provider: Any, pids: list[str] = pids) -> None:
                provider.delete_instances(pids)

            fut = self.pools.submit(pool, "scale-down", remove)
            if fut is not None:
                calls.append((fut, pool, f"deleted {len(pids)} drained nodes"))
        return calls

    def _settle(self, calls: Sequence[tuple[Future[Any], str, str]]) -> bool:
        """Wait (bounded) for this pass's provider calls; Events for their outcome. True if
        one failed (the pool is backed off: look again at once, for another pool)."""
        if not calls:
            return False
        wait_futures([c[0] for c in calls], timeout=self.settings.call_timeout_s)
        failed = False
        for fut, pool, what in calls:
            rt = self.pools.pools.get(pool)
            if rt is None:
                continue
            if not fut.done():
                self.events.record(
                    rt.obj, WARNING, "ProviderSlow", f"{what}: no answer from the provider yet"
                )
                continue
            err = fut.exception()
            if err is None:
                reason = "ScaledUp" if "->" in what else "Scaled"
                self.events.record(rt.obj, NORMAL, reason, what)
            else:
                failed = True
                self.events.record(rt.obj, WARNING, "ScaleFailed", f"{what}: {err}")
        return failed

    def _write_pool_status(self, view: ClusterView, now: float) -> None:
        futures = []
        for name, rt in self.pools.pools.items():
            obs = view.observations.get(name)
            status: dict[str, Any] = {
                "lastError": rt.last_error or None,
                "observedGeneration": int(rt.obj.get("metadata", {}).get("generation") or 0),
            }
            if obs is not None:
                target = obs.target
                if rt.is_busy and rt.asked_target is not None:
                    target = max(target or 0, rt.asked_target)
                status.update(
                    target=target or 0,
                    ready=obs.ready,
                    inFlight=obs.in_flight,
                    draining=obs.draining,
                )
            if rt.last_scale_s is not None:
                status["lastScaleTime"] = format_time(rt.last_scale_s)
            available = rt.available(now) and not rt.config_error
            old_status = rt.obj.get("status") or {}
            old = next(
                (c for c in old_status.get("conditions") or [] if c.get("type") == "Available"),
                None,
            )
            value = "True" if available else "False"
            reason = "Ready" if available else ("InvalidConfig" if rt.config_error else "BackedOff")
            message = "" if available else rt.backoff_reason or rt.last_error
            since = now
            if old is not None and old.get("status") == value:
                since = parse_time(old.get("lastTransitionTime")) or now
            status["conditions"] = [
                {
                    "type": "Available",
                    "status": value,
                    "reason": reason,
                    "message": message[:32000],
                    "lastTransitionTime": format_time(since),
                }
            ]
            if _unchanged(old_status, status):
                continue
            path = custom_path(NODEPOOLS, name=name, sub="status")
            futures.append(self.io.submit(self.kube.merge_patch, path, {"status": status}))
        for fut in futures:
            try:
                fut.result()
            except ApiError as err:
                log.warning("NodePool status not written: %s", err)

    # --- metrics --------------------------------------------------------------------------

    def _record_metrics(
        self,
        view: ClusterView,
        plan: Plan,
        quantiles: Mapping[float, Sequence[float]],
        waiting: Sequence[JobView],
        jobs: Sequence[JobView],
        steps: Mapping[str, lifecycle.JobStep],
        demand: float,
        resizes: Sequence[Resize] = (),
    ) -> None:
        m = self.metrics
        m.pending_gpus.clear()
        by_type: dict[str, int] = defaultdict(int)
        for job in waiting:
            by_type[job.gpu_type or "any"] += job.gang().total_gpus
        for gpu_type, gpus in by_type.items():
            m.pending_gpus.labels(gpu_type).set(gpus)
        m.pending_gangs.set(len(waiting))
        m.demand.set(demand)
        phases: dict[str, int] = defaultdict(int)
        for job in jobs:
            phases[str(steps[job.uid].status.get("phase", job.phase)) or QUEUED] += 1
        m.jobs.clear()
        for phase, count in phases.items():
            m.jobs.labels(phase).set(count)
        m.running_gangs.set(phases.get(ADMITTED, 0) + phases.get(RUNNING, 0))
        now = self.clock()
        for name, obs in view.observations.items():
            m.pool_nodes.labels(name, "ready").set(obs.ready)
            m.pool_nodes.labels(name, "in-flight").set(obs.in_flight)
            m.pool_nodes.labels(name, "draining").set(obs.draining)
            m.pool_target.labels(name).set(obs.target or 0)
        for rt in self.pools.pools.values():
            m.pool_available.labels(rt.name).set(1 if rt.available(now) else 0)
        m.forget_pools(set(self.pools.pools))
        m.forecast.clear()
        for q, values in quantiles.items():
            if values:
                m.forecast.labels(f"{q:g}").set(values[0])
        m.decisions.labels(plan.policy or self.config.policy, str(plan.fell_back).lower()).inc()
        for up in plan.scale_ups:
            m.actions.labels("scale-up", up.pool).inc()
        for r in plan.removals:
            m.actions.labels("remove", r.pool).inc()
        for c in plan.cordons:
            m.actions.labels("cordon", c.pool).inc()
        for c in plan.uncordons:
            m.actions.labels("uncordon", c.pool).inc()
        for resize in resizes:
            m.actions.labels("grow" if resize.grows else "shrink", resize.pool).inc()
        for note in plan.notes:
            m.actions.labels("unschedulable" if note.unschedulable else "waiting", "").inc()


def _unchanged(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    for key, value in new.items():
        if value is None:
            if old.get(key) is not None:
                return False
        elif old.get(key) != value:
            return False
    return True
