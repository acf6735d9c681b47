"""Applying DLServices: their Deployment, Service, replica count and status (blocking I/O).

Runs inside a reconcile pass, one service per worker thread. The decisions are
:mod:`controller.dlservice`'s; this module reads the metric, writes the objects, and
records an Event when the replica count changes, and when the service becomes (or stops
being) one no NodePool can hold.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.clock import format_time
from controller.dlservice import (
    SCHEDULABLE,
    ServiceView,
    Stabilizer,
    condition_of,
    recommend,
    render_deployment,
    render_service,
    schedulability,
    schedulable_conditions,
)
from controller.events import EventRecorder
from controller.kube import ApiError, Kube, core_path, custom_path, group_path
from controller.names import DLSERVICES
from controller.prometheus import Prometheus
from dlscaler.model import PoolSpec

log = logging.getLogger("dlscaler.serving")

TEMPLATE_HASH = "dlscaler.io/template-hash"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


class ServiceReconciler:
    def __init__(
        self,
        kube: Kube,
        events: EventRecorder,
        *,
        prometheus: Prometheus | None,
        window_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.kube = kube
        self.events = events
        self.prometheus = prometheus
        self.stabilizer = Stabilizer(window_s=window_s)
        self.clock = clock

    def reconcile(
        self,
        svc: ServiceView,
        deployment: Mapping[str, Any] | None,
        pools: Sequence[PoolSpec] | None = None,
    ) -> None:
        """``pools``: the NodePools the controller manages (None: not known this pass, so
        the ``Schedulable`` condition is left as it is)."""
        try:
            self._reconcile(svc, deployment, pools)
        except ApiError as err:
            log.warning("DLService %s: %s", svc.key, err)

    def _reconcile(
        self,
        svc: ServiceView,
        deployment: Mapping[str, Any] | None,
        pools: Sequence[PoolSpec] | None,
    ) -> None:
        now = self.clock()
        current = int(((deployment or {}).get("spec") or {}).get("replicas") or svc.wanted)
        metric = None
        if svc.query and self.prometheus is not None:
            metric = self.prometheus.query(svc.query)
        desired = svc.wanted
        status: dict[str, Any] = {}
        if metric is not None:
            if svc.rps_per_replica is not None:
                status["currentRequestsPerSecondPerReplica"] = round(metric / max(current, 1), 3)
            else:
                status["currentGpuUtilization"] = round(metric, 3)
            desired = self.stabilizer.settle(svc.key, now, recommend(svc, current, metric))
            if desired != svc.replicas:
                self.kube.merge_patch(
                    custom_path(DLSERVICES, svc.namespace, svc.name),
                    {"spec": {"replicas": desired}},
                )
                self.events.record(
                    svc.obj,
                    "Normal",
                    "Rescaled",
                    f"replicas {current} -> {desired} (measured {metric:g})",
                )
        self._ensure_deployment(svc, deployment, desired)
        self.kube.create_or_get(core_path("services", svc.namespace), render_service(svc))
        dep_status = (deployment or {}).get("status") or {}
        status.update(
            replicas=int(dep_status.get("replicas") or 0),
            readyReplicas=int(dep_status.get("readyReplicas") or 0),
            selector=svc.selector,
            observedGeneration=svc.generation,
        )
        if desired != current:
            status["lastScaleTime"] = format_time(now)
        events = self._schedulable(svc, pools, now, status) if pools is not None else []
        old = svc.status
        if any(old.get(k) != v for k, v in status.items()):
            self.kube.merge_patch(
                custom_path(DLSERVICES, svc.namespace, svc.name, "status"), {"status": status}
            )
        for type_, reason, message in events:
            self.events.record(svc.obj, type_, reason, message)

    def _schedulable(
        self, svc: ServiceView, pools: Sequence[PoolSpec], now: float, status: dict[str, Any]
    ) -> list[tuple[str, str, str]]:
        """Set the ``Schedulable`` condition in ``status`` when it changes; the Events to
        record once it is written. An Event only when the answer (or why) changes, so a
        service nobody can serve is reported once, not every pass."""
        sched = schedulability(svc, pools)
        conditions = schedulable_conditions(svc, sched, format_time(now))
        if conditions is None:
            return []
        status["conditions"] = conditions
        status["message"] = None if sched.schedulable else sched.message
        old = condition_of(svc, SCHEDULABLE)
        was = (old.get("status"), old.get("reason")) if old is not None else None
        if not sched.schedulable and was != ("False", sched.reason):
            return [("Warning", "Unschedulable", sched.message)]
        if sched.schedulable and was is not None and was[0] == "False":
            return [("Normal", "Schedulable", sched.message)]
        return []

    def _ensure_deployment(
        self, svc: ServiceView, deployment: Mapping[str, Any] | None, replicas: int
    ) -> None:
        body = render_deployment(svc, replicas)
        digest = _hash(body["spec"]["template"])
        body["metadata"]["annotations"] = {TEMPLATE_HASH: digest}
        path = group_path("apps/v1", "deployments", svc.namespace)
        if deployment is None:
            self.kube.create_or_get(path, body)
            self.events.record(
                svc.obj,
                "Normal",
                "Created",
                f"Deployment and Service {svc.name} with {replicas} replicas",
            )
            return
        meta = deployment.get("metadata") or {}
        spec = deployment.get("spec") or {}
        patch: dict[str, Any] = {}
        if (meta.get("annotations") or {}).get(TEMPLATE_HASH) != digest:
            patch = {
                "metadata": {"annotations": {TEMPLATE_HASH: digest}},
                "spec": {"template": body["spec"]["template"]},
            }
        if spec.get("replicas") != replicas:
            patch.setdefault("spec", {})["replicas"] = replicas
        if patch:
            self.kube.merge_patch(f"{path}/{svc.name}", patch)
