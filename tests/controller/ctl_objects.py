"""Kubernetes objects as the API server returns them (plain dicts), for the controller's
pure parts: nodes, pods, DLJobs and NodePools with the fields those parts read."""

from __future__ import annotations

from typing import Any

from controller.clock import format_time
from controller.names import (
    API_VERSION,
    ASSIGNED_NODE_ANNOTATION,
    ATTEMPT_LABEL,
    DRAINING_ANNOTATION,
    GPU_RESOURCE,
    JOB_UID_LABEL,
    POOL_LABEL,
    WORKER_INDEX_LABEL,
)

T0 = 1_700_000_000.0


def node(
    name: str,
    *,
    pool: str = "",
    gpus: int = 8,
    ready: bool = True,
    created_s: float = T0,
    ready_since_s: float | None = None,
    provider_id: str = "",
    draining_since_s: float | None = None,
    taints: tuple[str, ...] = (),
) -> dict[str, Any]:
    annotations = {}
    if draining_since_s is not None:
        annotations[DRAINING_ANNOTATION] = format_time(draining_since_s)
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": {POOL_LABEL: pool} if pool else {},
            "annotations": annotations,
            "creationTimestamp": format_time(created_s),
        },
        "spec": {
            "providerID": provider_id,
            "taints": [{"key": k, "effect": "NoSchedule"} for k in taints],
            "unschedulable": draining_since_s is not None,
        },
        "status": {
            "allocatable": {GPU_RESOURCE: str(gpus)} if ready else {},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": format_time(ready_since_s or created_s),
                }
            ],
        },
    }


def pod(
    name: str,
    *,
    node: str = "",
    gpus: int = 8,
    phase: str = "Running",
    namespace: str = "ns",
    job_uid: str = "",
    index: int = -1,
    attempt: int = 0,
    assigned_node: str = "",
    finished_s: float | None = None,
) -> dict[str, Any]:
    labels: dict[str, str] = {}
    if job_uid:
        labels[JOB_UID_LABEL] = job_uid
        labels[WORKER_INDEX_LABEL] = str(index)
        labels[ATTEMPT_LABEL] = str(attempt)
    annotations = {ASSIGNED_NODE_ANNOTATION: assigned_node} if assigned_node else {}
    status: dict[str, Any] = {"phase": phase}
    if finished_s is not None:
        status["containerStatuses"] = [
            {"name": "main", "state": {"terminated": {"finishedAt": format_time(finished_s)}}}
        ]
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "nodeName": node,
            "containers": [
                {"name": "main", "resources": {"limits": {GPU_RESOURCE: str(gpus)}} if gpus else {}}
            ],
        },
        "status": status,
    }


def dljob(
    name: str,
    *,
    namespace: str = "ns",
    workers: int | None = 2,
    min_workers: int | None = None,
    max_workers: int | None = None,
    gpus_per_worker: int = 8,
    gpu_type: str = "",
    framework: str = "pytorch",
    priority: int = 0,
    queue: str = "default",
    created_s: float = T0,
    status: dict[str, Any] | None = None,
    backoff_limit: int = 3,
    suspend: bool = False,
    template: dict[str, Any] | None = None,
    active_deadline_s: int | None = None,
    ttl_s: int | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "framework": framework,
        "gpusPerWorker": gpus_per_worker,
        "gpuType": gpu_type,
        "priority": priority,
        "queue": queue,
        "suspend": suspend,
        "runPolicy": {"backoffLimit": backoff_limit},
        "template": template
        or {"spec": {"containers": [{"name": "trainer", "image": "trainer:1"}]}},
    }
    if active_deadline_s is not None:
        spec["runPolicy"]["activeDeadlineSeconds"] = active_deadline_s
    if ttl_s is not None:
        spec["runPolicy"]["ttlSecondsAfterFinished"] = ttl_s
    if workers is not None:
        spec["workers"] = workers
    else:
        spec["minWorkers"] = min_workers
        spec["maxWorkers"] = max_workers
    return {
        "apiVersion": API_VERSION,
        "kind": "DLJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "generation": 1,
            "creationTimestamp": format_time(created_s),
        },
        "spec": spec,
        "status": status or {},
    }


def nodepool(
    name: str,
    *,
    gpus_per_node: int = 8,
    max_nodes: int = 10,
    min_nodes: int = 0,
    price: float = 8.0,
    gpu_type: str = "",
    delay_s: float = 300.0,
    idle_timeout_s: float | None = None,
    provider: str = "kwok",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "provider": provider,
        "gpusPerNode": gpus_per_node,
        "maxNodes": max_nodes,
        "minNodes": min_nodes,
        "pricePerHour": price,
        "gpuType": gpu_type,
        "provisioningDelaySeconds": delay_s,
    }
    if idle_timeout_s is not None:
        spec["idleTimeoutSeconds"] = idle_timeout_s
    return {
        "apiVersion": API_VERSION,
        "kind": "NodePool",
        "metadata": {"name": name, "uid": f"uid-pool-{name}", "generation": 1},
        "spec": spec,
    }
