"""DLJob and worker-pod objects, parsed once into typed views.

The CRD's schema has already validated the spec (bounds, one of workers or
minWorkers/maxWorkers); parsing here only gives the fields names and types, and the
:class:`~dlscaler.model.Gang` the policy sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from controller.clock import parse_time
from controller.names import (
    ASSIGNED_NODE_ANNOTATION,
    ATTEMPT_LABEL,
    GPU_RESOURCE,
    JOB_UID_LABEL,
    SERVICE_LABEL,
    WORKER_INDEX_LABEL,
)
from dlscaler.model import Gang

QUEUED, ADMITTED, RUNNING, SUCCEEDED, FAILED = (
    "Queued",
    "Admitted",
    "Running",
    "Succeeded",
    "Failed",
)
FINISHED = (SUCCEEDED, FAILED)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class JobView:
    namespace: str
    name: str
    uid: str
    created_s: float
    framework: str
    gpus_per_worker: int
    gpu_type: str
    priority: int
    queue: str
    min_workers: int
    max_workers: int
    """Equal to ``min_workers`` for a fixed-size gang."""
    backoff_limit: int
    active_deadline_s: float | None
    ttl_after_finished_s: float | None
    suspend: bool
    generation: int
    template: Mapping[str, Any] = field(compare=False)
    status: Mapping[str, Any] = field(compare=False)
    obj: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def job_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def elastic(self) -> bool:
        return self.max_workers != self.min_workers

    @property
    def phase(self) -> str:
        return str(self.status.get("phase") or "")

    @property
    def restarts(self) -> int:
        """Gang restarts after failures (what ``backoffLimit`` bounds)."""
        return int(self.status.get("restarts") or 0)

    @property
    def resizes(self) -> int:
        """Elastic resizes (restarts with a new world size; not bounded by ``backoffLimit``)."""
        return int(self.status.get("resizes") or 0)

    @property
    def attempt(self) -> int:
        """The current start of the gang: 0, then one more per restart or resize (the
        ``dlscaler.io/attempt`` label of its pods)."""
        return self.restarts + self.resizes

    @property
    def admitted_workers(self) -> int:
        return int(self.status.get("workers") or self.min_workers)

    def worker_nodes(self) -> dict[int, str]:
        """The node admission reserved for each worker index (from ``status.workerStates``)."""
        out: dict[int, str] = {}
        for ws in self.status.get("workerStates") or []:
            if isinstance(ws, Mapping) and ws.get("nodeName"):
                out[int(ws.get("index", 0))] = str(ws["nodeName"])
        return out

    def condition(self, kind: str) -> Mapping[str, Any] | None:
        for c in self.status.get("conditions") or []:
            if isinstance(c, Mapping) and c.get("type") == kind:
                return c
        return None

    def gang(self, workers: int | None = None) -> Gang:
        """What the policy sees: a pending gang of ``workers`` (elastic: its minimum)."""
        return Gang(
            job_id=self.job_id,
            submit_s=self.created_s,
            workers=workers or self.min_workers,
            gpus_per_worker=self.gpus_per_worker,
            gpu_type=self.gpu_type,
            priority=self.priority,
            queue=self.queue,
        )


def parse_dljob(obj: Mapping[str, Any]) -> JobView:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    run = spec.get("runPolicy") or {}
    workers = spec.get("workers")
    if workers is not None:
        lo = hi = int(workers)
    else:
        lo = int(spec.get("minWorkers") or 1)
        hi = int(spec.get("maxWorkers") or lo)
    deadline = run.get("activeDeadlineSeconds")
    ttl = run.get("ttlSecondsAfterFinished")
    return JobView(
        namespace=str(meta.get("namespace", "")),
        name=str(meta["name"]),
        uid=str(meta.get("uid", "")),
        created_s=parse_time(meta.get("creationTimestamp")) or 0.0,
        framework=str(spec.get("framework", "pytorch")),
        gpus_per_worker=int(spec.get("gpusPerWorker", 1)),
        gpu_type=str(spec.get("gpuType") or ""),
        priority=int(spec.get("priority") or 0),
        queue=str(spec.get("queue") or "default"),
        min_workers=max(1, lo),
        max_workers=max(lo, hi, 1),
        backoff_limit=int(run.get("backoffLimit", 3)),
        active_deadline_s=float(deadline) if deadline is not None else None,
        ttl_after_finished_s=float(ttl) if ttl is not None else None,
        suspend=bool(spec.get("suspend", False)),
        generation=int(meta.get("generation") or 0),
        template=spec.get("template") or _EMPTY,
        status=obj.get("status") or _EMPTY,
        obj=obj,
    )


# --- pods ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodView:
    namespace: str
    name: str
    phase: str
    node_name: str
    """The node it is bound to ('' while unscheduled)."""
    assigned_node: str
    """The node admission reserved for it (our workers only)."""
    gpus: int
    job_uid: str = ""
    index: int = -1
    attempt: int = 0
    restarts: int = 0
    deleting: bool = False
    daemonset: bool = False
    mirror: bool = False
    finished_s: float | None = None
    message: str = ""
    service: str = ""
    """The DLService this pod is a replica of ('' for others)."""
    unschedulable: bool = False
    """The scheduler tried and found no node for it."""
    created_s: float = 0.0

    @property
    def active(self) -> bool:
        return self.phase not in ("Succeeded", "Failed")

    @property
    def holds_node(self) -> str:
        """The node whose GPUs this pod holds or will hold ('' when none)."""
        if not self.active:
            return ""
        return self.node_name or self.assigned_node


def pod_gpus(spec: Mapping[str, Any]) -> int:
    """GPUs a pod holds: the sum over its containers, or its largest init container if
    more (init containers run one at a time, before the others), as the scheduler counts."""

    def of(container: Mapping[str, Any]) -> int:
        res = container.get("resources") or {}
        for part in ("limits", "requests"):
            value = (res.get(part) or {}).get(GPU_RESOURCE)
            if value is not None:
                try:
                    return int(str(value))
                except ValueError:
                    return 0
        return 0

    main = sum(of(c) for c in spec.get("containers") or [])
    init = max((of(c) for c in spec.get("initContainers") or []), default=0)
    return max(main, init)


def parse_pod(obj: Mapping[str, Any]) -> PodView:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    statuses = list(status.get("containerStatuses") or [])
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    finished = [
        parse_time(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        for c in statuses
    ]
    finished_s = max((f for f in finished if f is not None), default=None)
    message = str(status.get("message") or status.get("reason") or "")
    unschedulable = False
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            unschedulable = cond.get("reason") == "Unschedulable"
            message = message or str(cond.get("message") or cond.get("reason") or "")
    owners = meta.get("ownerReferences") or []
    return PodView(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        phase=str(status.get("phase") or "Pending"),
        node_name=str(spec.get("nodeName") or ""),
        assigned_node=str(annotations.get(ASSIGNED_NODE_ANNOTATION) or ""),
        gpus=pod_gpus(spec),
        job_uid=str(labels.get(JOB_UID_LABEL) or ""),
        index=_int(labels.get(WORKER_INDEX_LABEL), -1),
        attempt=_int(labels.get(ATTEMPT_LABEL), 0),
        restarts=restarts,
        deleting=bool(meta.get("deletionTimestamp")),
        daemonset=any(o.get("kind") == "DaemonSet" for o in owners),
        mirror="kubernetes.io/config.mirror" in annotations,
        finished_s=finished_s,
        message=message[:4000],
        service=str(labels.get(SERVICE_LABEL) or ""),
        unschedulable=unschedulable and not spec.get("nodeName"),
        created_s=parse_time(meta.get("creationTimestamp")) or 0.0,
    )


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default
