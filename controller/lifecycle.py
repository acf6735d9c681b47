"""A DLJob's life after admission, as a pure function of the job, its pods and the time.

``step(job, pods, now)`` says what should change: the status to write, pods to create or
delete, Events to record, and whether to delete the job (``ttlSecondsAfterFinished``).
Admission itself (Queued -> Admitted) is :mod:`controller.admission`'s job.

    (new) -> Queued -> Admitted -> Running -> Succeeded
                ^          |   ^       |
                |          |   +-------+  resize (elastic: a new world size; :func:`resize`)
                +----------+-----------+  restart (a worker failed or vanished), after an
                           |           |  exponential delay (``nextRestartTime``)
                           +-----------+--> Failed (backoffLimit, activeDeadlineSeconds)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.clock import format_time, parse_time
from controller.dljob import (
    ADMITTED,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    JobView,
    PodView,
)

NORMAL, WARNING = "Normal", "Warning"


@dataclass(frozen=True, slots=True)
class RestartBackoff:
    """The delay between a gang's failure and its restart, as the Job controller's pod
    backoff: ``base_s``, doubled per restart, at most ``max_s`` (0: restart at once)."""

    base_s: float = 10.0
    max_s: float = 360.0

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.max_s < 0:
            raise ValueError(
                "restart backoff: base_s and max_s must be >= 0 seconds, "
                f"got base_s={self.base_s}, max_s={self.max_s}"
            )

    def delay_s(self, restarts: int) -> float:
        """Before restart number ``restarts`` (1 for the first)."""
        if self.base_s <= 0 or restarts < 1:
            return 0.0
        # Capped before the power grows without bound (backoffLimit may be 1000).
        doublings = min(restarts - 1, 64)
        return min(self.max_s, self.base_s * 2.0**doublings)


DEFAULT_BACKOFF = RestartBackoff()


@dataclass(frozen=True, slots=True)
class JobEvent:
    type: str
    reason: str
    message: str


@dataclass(slots=True)
class JobStep:
    status: dict[str, Any] = field(default_factory=dict)
    """Fields to merge into ``status`` (empty: nothing changes)."""
    create_workers: list[int] = field(default_factory=list)
    delete_pods: list[str] = field(default_factory=list)
    delete_job: bool = False
    events: list[JobEvent] = field(default_factory=list)
    wake_at_s: float | None = None
    """When time alone will change this job (a deadline, a TTL)."""

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(JobEvent(type_, reason, message))


def condition(
    kind: str, status: bool, reason: str, message: str, now_s: float, job: JobView
) -> dict[str, Any]:
    """A metav1.Condition; keeps the old transition time when the status did not flip."""
    value = "True" if status else "False"
    old = job.condition(kind)
    since = now_s
    if old is not None and old.get("status") == value:
        since = parse_time(old.get("lastTransitionTime")) or now_s
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message[:32000],
        "lastTransitionTime": format_time(since),
        "observedGeneration": job.generation,
    }


def set_conditions(job: JobView, step: JobStep, *conds: dict[str, Any]) -> None:
    """Merge ``conds`` into the job's conditions (by type) in ``step.status``."""
    current = {c["type"]: dict(c) for c in step.status.get("conditions") or []}
    if not current:
        current = {
            str(c.get("type")): dict(c)
            for c in job.status.get("conditions") or []
            if isinstance(c, Mapping)
        }
    for c in conds:
        current[c["type"]] = c
    step.status["conditions"] = list(current.values())


def worker_states(job: JobView, pods: Sequence[PodView]) -> list[dict[str, Any]]:
    nodes = job.worker_nodes()
    by_index = {p.index: p for p in pods if p.attempt == job.attempt and p.index >= 0}
    out = []
    for i in range(job.admitted_workers):
        pod = by_index.get(i)
        entry: dict[str, Any] = {"index": i, "phase": "Pending"}
        if pod is not None:
            entry.update(podName=pod.name, phase=_pod_phase(pod.phase), restarts=pod.restarts)
            if pod.message:
                entry["message"] = pod.message
        node = (pod.node_name if pod else "") or nodes.get(i, "")
        if node:
            entry["nodeName"] = node
        out.append(entry)
    return out


def _pod_phase(phase: str) -> str:
    return phase if phase in ("Pending", "Running", "Succeeded", "Failed") else "Unknown"


def step(
    job: JobView,
    pods: Sequence[PodView],
    now_s: float,
    *,
    existing_nodes: set[str] | frozenset[str] = frozenset(),
    unschedulable_after_s: float = 300.0,
    backoff: RestartBackoff = DEFAULT_BACKOFF,
) -> JobStep:
    """What should happen to ``job`` now. ``pods`` are its pods (any attempt);
    ``existing_nodes`` the names of the cluster's nodes (a worker pinned to a node that is
    gone will never run). A worker the scheduler has refused for ``unschedulable_after_s``
    (its node filled up meanwhile, a volume that does not exist...) restarts the gang, so
    it is placed afresh or, past the backoff limit, fails saying why. A restarted gang
    waits ``backoff`` before it is queued again."""
    out = JobStep()
    phase = job.phase
    if not phase:
        out.status.update(
            phase=QUEUED,
            submittedTime=format_time(job.created_s or now_s),
            workers=job.min_workers,
            gpus=job.min_workers * job.gpus_per_worker,
            restarts=0,
            message="waiting for GPUs",
            observedGeneration=job.generation,
        )
        set_conditions(
            job, out, condition("Queued", True, "Submitted", "waiting for GPUs", now_s, job)
        )
        out.event(NORMAL, "Queued", f"queued for {job.min_workers} x {job.gpus_per_worker} GPUs")
        return out
    if phase in FINISHED:
        return _finished(job, pods, now_s, out)
    stale = [p.name for p in pods if p.attempt != job.attempt and not p.deleting]
    out.delete_pods.extend(stale)
    if job.suspend:
        return _suspend(job, pods, now_s, out)
    if phase == QUEUED:
        resumed = unsuspended(job, now_s)
        if resumed is not None:
            resumed.delete_pods = out.delete_pods
            return resumed
        return _restart_delay(job, now_s, out)
    current = [p for p in pods if p.attempt == job.attempt]
    started = parse_time(job.status.get("admittedTime")) or now_s
    if job.active_deadline_s is not None:
        deadline = started + job.active_deadline_s
        if now_s >= deadline:
            return _fail(
                job,
                current,
                now_s,
                out,
                "DeadlineExceeded",
                f"ran longer than activeDeadlineSeconds ({job.active_deadline_s:.0f} s)",
            )
        out.wake_at_s = deadline
    by_index = {p.index: p for p in current if p.index >= 0}
    workers = job.admitted_workers
    failed = [p for p in current if p.phase == "Failed"]
    missing = [i for i in range(workers) if i not in by_index or by_index[i].deleting]
    orphaned = [
        p
        for p in current
        if p.active
        and not p.node_name
        and p.assigned_node
        and existing_nodes
        and p.assigned_node not in existing_nodes
    ]
    refused = [
        p
        for p in current
        if p.active
        and p.unschedulable
        and p.created_s
        and now_s - p.created_s > unschedulable_after_s
    ]
    if failed or orphaned or refused or (missing and phase == RUNNING):
        if failed:
            why = f"worker {failed[0].name} failed" + (
                f": {failed[0].message}" if failed[0].message else ""
            )
        elif orphaned:
            why = f"node {orphaned[0].assigned_node} of worker {orphaned[0].name} is gone"
        elif refused:
            why = (
                f"worker {refused[0].name} could not be scheduled for "
                f"{unschedulable_after_s:.0f} s: {refused[0].message}"
            )
        else:
            why = f"worker {missing[0]} disappeared"
        return _restart(job, current, now_s, out, why, backoff)
    if missing:  # admitted, pods not all created yet (or a crash in between): create them
        out.create_workers = missing
    states = worker_states(job, current)
    if states != list(job.status.get("workerStates") or []):
        out.status["workerStates"] = states
    if len(by_index) == workers and all(p.phase == "Succeeded" for p in by_index.values()):
        out.status.update(
            phase=SUCCEEDED, completionTime=format_time(now_s), message="all workers succeeded"
        )
        set_conditions(
            job,
            out,
            condition("Running", False, "Completed", "all workers succeeded", now_s, job),
            condition("Succeeded", True, "Completed", "all workers succeeded", now_s, job),
        )
        out.event(NORMAL, "Succeeded", f"all {workers} workers succeeded")
        return out
    running = len(by_index) == workers and all(
        p.phase in ("Running", "Succeeded") for p in by_index.values()
    )
    if running and phase == ADMITTED:
        # A resized job keeps the start time of its first run (a restart clears it).
        started_s = parse_time(job.status.get("startTime")) or now_s
        out.status.update(
            phase=RUNNING, startTime=format_time(started_s), message=f"{workers} workers running"
        )
        set_conditions(
            job,
            out,
            condition(
                "Running", True, "AllWorkersRunning", f"{workers} workers running", now_s, job
            ),
        )
        out.event(NORMAL, "Running", f"all {workers} workers are running")
    return out


def _restart(
    job: JobView,
    pods: Sequence[PodView],
    now_s: float,
    out: JobStep,
    why: str,
    backoff: RestartBackoff,
) -> JobStep:
    restarts = job.restarts + 1
    if restarts > job.backoff_limit:
        return _fail(
            job,
            pods,
            now_s,
            out,
            "BackoffLimitExceeded",
            f"{why}; backoffLimit {job.backoff_limit} reached",
        )
    out.delete_pods.extend(p.name for p in pods if not p.deleting)
    delay = backoff.delay_s(restarts)
    msg = f"{why}; restarting the gang ({restarts} of {job.backoff_limit})"
    reason = "Restarting"
    next_restart: str | None = None
    if delay > 0:
        # Whole seconds, rounded up: the stamp is what later passes compare against.
        at = math.ceil(now_s + delay)
        next_restart = format_time(at)
        msg += f" after a backoff of {delay:.0f} s, at {next_restart}"
        reason = "BackoffDelay"
        out.wake_at_s = at
    out.status.update(
        phase=QUEUED,
        restarts=restarts,
        message=msg,
        workerStates=[],
        workers=job.min_workers,
        gpus=job.min_workers * job.gpus_per_worker,
        admittedTime=None,
        startTime=None,
        nextRestartTime=next_restart,
    )
    set_conditions(
        job,
        out,
        condition("Running", False, "Restarting", msg, now_s, job),
        condition("Queued", True, reason, msg, now_s, job),
    )
    out.event(WARNING, "Restarting", msg)
    return out


def next_restart_s(job: JobView, step: JobStep | None = None) -> float | None:
    """When a restarted gang may be queued for GPUs again (``None``: it may now), as this
    pass's ``step`` leaves it."""
    status: Mapping[str, Any] = job.status
    if step is not None and "nextRestartTime" in step.status:
        status = step.status
    return parse_time(status.get("nextRestartTime"))


def backing_off(job: JobView, step: JobStep | None, now_s: float) -> bool:
    """A restarted gang still in its backoff delay: neither admitted nor provisioned for."""
    at = next_restart_s(job, step)
    return at is not None and now_s < at


def _restart_delay(job: JobView, now_s: float, out: JobStep) -> JobStep:
    """A queued job after a restart: wait out the backoff, then ask for GPUs again."""
    at = next_restart_s(job)
    if at is None:
        return out
    if now_s < at:
        out.wake_at_s = at
        return out
    msg = f"backoff over: waiting for GPUs (restart {job.restarts} of {job.backoff_limit})"
    out.status.update(nextRestartTime=None, message=msg)
    set_conditions(job, out, condition("Queued", True, "Restarting", msg, now_s, job))
    return out


def resize(
    job: JobView,
    pods: Sequence[PodView],
    now_s: float,
    *,
    nodes: Sequence[str],
    reason: str,
    message: str,
) -> JobStep:
    """Restart a running elastic gang with ``len(nodes)`` workers on ``nodes`` (by index).

    Every worker is recreated with the new world size (its rendezvous environment names
    every worker); the pods of the current gang are deleted and the new ones belong to the
    next attempt. This is not a failure: ``restarts`` (and so ``backoffLimit``) is left
    alone, ``resizes`` counts it and ``lastResizeTime`` spaces resizes out.
    """
    out = JobStep()
    out.delete_pods.extend(p.name for p in pods if not p.deleting)
    workers = len(nodes)
    # Workers whose pod name is free start now (a worker added by growth); the others
    # once the old pod of that name is gone (the next passes create missing workers).
    taken = {p.index for p in pods}
    out.create_workers = [i for i in range(workers) if i not in taken]
    states = [{"index": i, "nodeName": n, "phase": "Pending"} for i, n in enumerate(nodes)]
    text = f"{message}; restarting its {workers} workers"
    out.status.update(
        phase=ADMITTED,
        workers=workers,
        gpus=workers * job.gpus_per_worker,
        workerStates=states,
        resizes=job.resizes + 1,
        lastResizeTime=format_time(now_s),
        message=text,
    )
    resized = condition("Resized", True, reason, message, now_s, job)
    resized["lastTransitionTime"] = format_time(now_s)  # each resize is a new transition
    set_conditions(job, out, resized, condition("Running", False, "Resizing", text, now_s, job))
    out.event(NORMAL, "Resized", message)
    return out


def _fail(
    job: JobView, pods: Sequence[PodView], now_s: float, out: JobStep, reason: str, msg: str
) -> JobStep:
    out.delete_pods.extend(p.name for p in pods if p.active and not p.deleting)
    out.status.update(phase=FAILED, completionTime=format_time(now_s), message=msg)
    set_conditions(
        job,
        out,
        condition("Running", False, reason, msg, now_s, job),
        condition("Failed", True, reason, msg, now_s, job),
    )
    out.event(WARNING, reason, msg)
    return out


def _suspend(job: JobView, pods: Sequence[PodView], now_s: float, out: JobStep) -> JobStep:
    active = [p.name for p in pods if p.active and not p.deleting]
    out.delete_pods.extend(n for n in active if n not in out.delete_pods)
    cond = job.condition("Suspended")
    if job.phase != QUEUED or cond is None or cond.get("status") != "True":
        out.status.update(
            phase=QUEUED, message="suspended", workerStates=[], admittedTime=None, startTime=None
        )
        set_conditions(
            job, out, condition("Suspended", True, "Suspended", "spec.suspend is true", now_s, job)
        )
        out.event(NORMAL, "Suspended", "job suspended: its workers are stopped")
    return out


def _finished(job: JobView, pods: Sequence[PodView], now_s: float, out: JobStep) -> JobStep:
    if job.phase == FAILED:
        out.delete_pods.extend(p.name for p in pods if p.active and not p.deleting)
    if job.ttl_after_finished_s is not None:
        done = parse_time(job.status.get("completionTime")) or now_s
        expires = done + job.ttl_after_finished_s
        if now_s >= expires:
            out.delete_job = True
        else:
            out.wake_at_s = expires
    return out


def unsuspended(job: JobView, now_s: float) -> JobStep | None:
    """A queued job whose suspend was lifted: clear the condition."""
    cond = job.condition("Suspended")
    if job.suspend or cond is None or cond.get("status") != "True":
        return None
    out = JobStep()
    out.status["message"] = "waiting for GPUs"
    set_conditions(
        job, out, condition("Suspended", False, "Resumed", "spec.suspend is false", now_s, job)
    )
    out.event(NORMAL, "Resumed", "job resumed")
    return out
