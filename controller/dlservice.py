"""DLService: a model server run as a Deployment and a Service, its replicas driven by load.

Pure parts: parsing, the replica count (HPA's rules), and the objects to create.

* Replicas follow the target: for requests per second, ``ceil(total rps / target per
  replica)``; for GPU utilisation, ``ceil(replicas * current % / target %)``; within
  ``[minReplicas, maxReplicas]``, with a 10 % tolerance so noise does not resize.
* Scaling down is stabilised: the count never drops below the highest recommendation of the
  last ``window_s`` (HPA's ``stabilizationWindowSeconds``), so a short dip does not take
  replicas away that the next minute needs. Scaling up is immediate.
* Without a ``prometheusQuery`` (or without a Prometheus to ask) the controller does not
  choose: ``spec.replicas`` is whatever the user or another autoscaler set through the
  ``/scale`` subresource, kept within bounds.

The replicas' GPU requests are ordinary pod requests; replicas that cannot be scheduled
become pending gangs of one for the policy (``pending_gangs``), so serving and training
demand grow the same pools. A service that no NodePool could ever grow capacity for (its GPU
type is offered by none, or a replica needs more GPUs than any fitting node has) is told
so in a ``Schedulable`` condition (:func:`schedulability`), as a DLJob is.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.dljob import PodView
from controller.gang import label_value
from controller.kube import owner_reference
from controller.names import GPU_RESOURCE, GPU_TYPE_LABEL, SERVICE_LABEL
from dlscaler.model import Gang, PoolSpec

TOLERANCE = 0.1
SERVING_QUEUE = "serving"
SCHEDULABLE = "Schedulable"
MAX_POOLS_NAMED = 20
"""A message names at most this many NodePools (an Event's message is cut at 1 KiB)."""


@dataclass(frozen=True, slots=True)
class ServiceView:
    namespace: str
    name: str
    uid: str
    generation: int
    replicas: int | None
    min_replicas: int
    max_replicas: int
    gpus_per_replica: int
    gpu_type: str
    rps_per_replica: float | None
    gpu_utilization: float | None
    query: str
    template: Mapping[str, Any] = field(compare=False)
    status: Mapping[str, Any] = field(compare=False)
    obj: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def wanted(self) -> int:
        """``spec.replicas`` within bounds (``minReplicas`` when unset)."""
        base = self.min_replicas if self.replicas is None else self.replicas
        return min(self.max_replicas, max(self.min_replicas, base))

    @property
    def selector(self) -> str:
        return f"{SERVICE_LABEL}={label_value(self.name)}"


def parse_dlservice(obj: Mapping[str, Any]) -> ServiceView:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    target = spec.get("target") or {}
    rps = target.get("requestsPerSecondPerReplica")
    util = target.get("gpuUtilization")
    replicas = spec.get("replicas")
    return ServiceView(
        namespace=str(meta.get("namespace", "")),
        name=str(meta["name"]),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        replicas=int(replicas) if replicas is not None else None,
        min_replicas=int(spec.get("minReplicas", 1)),
        max_replicas=int(spec.get("maxReplicas", 1)),
        gpus_per_replica=int(spec.get("gpusPerReplica", 1)),
        gpu_type=str(spec.get("gpuType") or ""),
        rps_per_replica=float(rps) if rps is not None else None,
        gpu_utilization=float(util) if util is not None else None,
        query=str(target.get("prometheusQuery") or ""),
        template=spec.get("template") or {},
        status=obj.get("status") or {},
        obj=obj,
    )


def recommend(svc: ServiceView, current_replicas: int, metric: float) -> int:
    """Replicas for the measured ``metric`` (total requests/s, or mean GPU utilisation %)."""
    if svc.rps_per_replica is not None:
        raw = metric / svc.rps_per_replica
        now = max(current_replicas, 1)
        if abs(raw / now - 1.0) <= TOLERANCE:
            return current_replicas
        wanted = math.ceil(raw)
    elif svc.gpu_utilization is not None:
        ratio = metric / svc.gpu_utilization
        if abs(ratio - 1.0) <= TOLERANCE:
            return current_replicas
        wanted = math.ceil(max(current_replicas, 1) * ratio)
    else:
        return current_replicas
    return min(svc.max_replicas, max(svc.min_replicas, wanted))


@dataclass(slots=True)
class Stabilizer:
    """The highest recommendation of the last ``window_s`` seconds, per service."""

    window_s: float = 300.0
    _history: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)

    def settle(self, key: str, now_s: float, recommended: int) -> int:
        history = self._history.setdefault(key, deque())
        history.append((now_s, recommended))
        while history and history[0][0] < now_s - self.window_s:
            history.popleft()
        return max(r for _, r in history)

    def forget(self, keys: set[str]) -> None:
        for key in set(self._history) - keys:
            del self._history[key]


def replica_labels(svc: ServiceView) -> dict[str, str]:
    labels = {SERVICE_LABEL: label_value(svc.name)}
    if svc.gpu_type:
        labels[GPU_TYPE_LABEL] = svc.gpu_type
    return labels


def render_deployment(svc: ServiceView, replicas: int) -> dict[str, Any]:
    template = copy.deepcopy(dict(svc.template))
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **replica_labels(svc)}
    spec = template.setdefault("spec", {})
    containers = spec.get("containers") or []
    if containers and svc.gpus_per_replica:
        res = containers[0].setdefault("resources", {})
        for part in ("limits", "requests"):
            res[part] = {**(res.get(part) or {}), GPU_RESOURCE: str(svc.gpus_per_replica)}
    if svc.gpu_type:
        # Replicas only fit nodes of their GPU type (the label every pool's nodes carry).
        affinity = spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
        required = affinity.setdefault(
            "requiredDuringSchedulingIgnoredDuringExecution", {"nodeSelectorTerms": []}
        )
        terms = required.setdefault("nodeSelectorTerms", [])
        if not terms:
            terms.append({})
        expr = {"key": GPU_TYPE_LABEL, "operator": "In", "values": [svc.gpu_type]}
        for term in terms:
            term.setdefault("matchExpressions", []).append(dict(expr))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": svc.name,
            "namespace": svc.namespace,
            "labels": replica_labels(svc),
            "ownerReferences": [owner_reference(svc.obj)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {SERVICE_LABEL: label_value(svc.name)}},
            "template": template,
        },
    }


def render_service(svc: ServiceView) -> dict[str, Any]:
    ports = []
    for c in (svc.template.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            port = {"port": p["containerPort"], "targetPort": p["containerPort"]}
            if p.get("name"):
                port["name"] = p["name"]
            if p.get("protocol"):
                port["protocol"] = p["protocol"]
            ports.append(port)
    if not ports:
        ports = [{"name": "http", "port": 80, "targetPort": 8080}]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": svc.name,
            "namespace": svc.namespace,
            "labels": replica_labels(svc),
            "ownerReferences": [owner_reference(svc.obj)],
        },
        "spec": {"selector": {SERVICE_LABEL: label_value(svc.name)}, "ports": ports},
    }


def pending_gangs(services: Sequence[ServiceView], pods: Sequence[PodView]) -> list[Gang]:
    """Replicas the scheduler could not place: one pending gang of one worker each."""
    by_label = {label_value(s.name): s for s in services}
    out = []
    for pod in pods:
        svc = by_label.get(pod.service) if pod.service else None
        if svc is None or pod.namespace != svc.namespace or not pod.unschedulable:
            continue
        out.append(
            Gang(
                job_id=f"{svc.namespace}/{pod.name}",
                submit_s=pod.created_s,
                workers=1,
                gpus_per_worker=svc.gpus_per_replica,
                gpu_type=svc.gpu_type,
                queue=SERVING_QUEUE,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Schedulability:
    """Whether some NodePool can ever hold a replica: the ``Schedulable`` condition."""

    schedulable: bool
    reason: str
    message: str


def _pool_list(pools: Sequence[PoolSpec]) -> str:
    named = [f"{p.name} ({p.gpu_type or 'unnamed type'}, {p.gpus_per_node} GPUs/node)"
             for p in sorted(pools, key=lambda p: p.name)]  # fmt: skip
    if not named:
        return "there are no NodePools"
    more = len(named) - MAX_POOLS_NAMED
    shown = ", ".join(named[:MAX_POOLS_NAMED]) + (f" and {more} more" if more > 0 else "")
    return f"NodePools: {shown}"


def schedulability(svc: ServiceView, pools: Sequence[PoolSpec]) -> Schedulability:
    """The policy's own fit rule (``PoolSpec.accepts``) for one replica, against every
    NodePool the controller manages. A pool that is backed off or at its maximum still
    counts: the condition says whether waiting can ever help, not whether it is quick."""
    if svc.gpus_per_replica == 0:
        return Schedulability(True, "NoGpusRequested", "replicas request no GPUs")
    wanted = svc.gpu_type or "(any)"
    replica = Gang(
        job_id=svc.key,
        submit_s=0.0,
        workers=1,
        gpus_per_worker=svc.gpus_per_replica,
        gpu_type=svc.gpu_type,
        queue=SERVING_QUEUE,
    )
    typed = [p for p in pools if replica.fits_gpu_type(p.gpu_type)]
    if not typed:
        return Schedulability(
            False,
            "NoPoolOffersGpuType",
            f"no NodePool offers GPU type {wanted!r}, so no node can be added for the "
            f"replicas; {_pool_list(pools)}. Create a NodePool with gpuType {wanted!r} or "
            "change spec.gpuType.",
        )
    fitting = sorted(p.name for p in typed if p.accepts(replica))
    if not fitting:
        largest = max(p.gpus_per_node for p in typed)
        return Schedulability(
            False,
            "NoPoolFitsReplica",
            f"a replica needs {svc.gpus_per_replica} GPUs of type {wanted!r}; the largest "
            f"node of that type has {largest}; {_pool_list(typed)}. Lower "
            "spec.gpusPerReplica or add a NodePool with larger nodes.",
        )
    shown = ", ".join(fitting[:MAX_POOLS_NAMED])
    more = len(fitting) - MAX_POOLS_NAMED
    return Schedulability(
        True,
        "PoolOffersGpuType",
        f"NodePools that can add nodes for the replicas: {shown}"
        + (f" and {more} more" if more > 0 else ""),
    )


def condition_of(svc: ServiceView, kind: str) -> Mapping[str, Any] | None:
    for cond in svc.status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return None


def schedulable_conditions(
    svc: ServiceView, sched: Schedulability, now: str
) -> list[dict[str, Any]] | None:
    """The service's conditions with ``Schedulable`` set from ``sched`` (``now``: an RFC
    3339 time), or None when the condition already says exactly this. The transition time
    moves only when the status flips, as for every metav1.Condition."""
    old = condition_of(svc, SCHEDULABLE)
    value = "True" if sched.schedulable else "False"
    if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == (
        value,
        sched.reason,
        sched.message,
    ):
        return None
    since = now
    if old is not None and old.get("status") == value and old.get("lastTransitionTime"):
        since = str(old["lastTransitionTime"])
    cond = {
        "type": SCHEDULABLE,
        "status": value,
        "reason": sched.reason,
        "message": sched.message[:32000],
        "lastTransitionTime": since,
        "observedGeneration": svc.generation,
    }
    others = [
        dict(c)
        for c in svc.status.get("conditions") or []
        if isinstance(c, Mapping) and c.get("type") != SCHEDULABLE
    ]
    return [*others, cond]
