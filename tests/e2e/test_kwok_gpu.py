"""kwok GPU nodes in the real control plane: GPU pods really schedule, run and finish."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from controller.devcluster import DevCluster, wait_until
from controller.devcluster_kwok import (
    GPU_RESOURCE,
    GPU_TYPE_LABEL,
    POD_RESULT_ANNOTATION,
    POD_RUN_DURATION_ANNOTATION,
    gpu_node_manifest,
)


def gpu_pod(
    name: str, gpu_type: str, gpus: int = 8, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """A pod that needs ``gpus`` GPUs of ``gpu_type`` (a type no other test uses, so the
    only nodes that can take it are the ones this test makes)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "nodeSelector": {GPU_TYPE_LABEL: gpu_type},
            "containers": [
                {
                    "name": "trainer",
                    "image": "busybox:1.36",
                    "resources": {"limits": {GPU_RESOURCE: str(gpus)}},
                }
            ],
        },
    }


def unique_gpu_type() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def pod(cluster: DevCluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.get_json("pod", name, "-n", ns)


def scheduled_condition(p: dict[str, Any]) -> dict[str, Any]:
    conds = [c for c in p["status"].get("conditions", []) if c["type"] == "PodScheduled"]
    return conds[0] if conds else {}


def create(cluster: DevCluster, ns: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(manifest))


def wait_phase(
    cluster: DevCluster, ns: str, name: str, phase: str, timeout_s: float = 30
) -> dict[str, Any]:
    wait_until(
        lambda: pod(cluster, ns, name)["status"].get("phase") == phase,
        timeout_s,
        f"pod {name} {phase}",
    )
    return pod(cluster, ns, name)


def test_gpu_pod_pending_without_gpu_node_then_bound_when_one_exists(
    kube_cluster: DevCluster, kube_namespace: str, kube_gpu_node: Callable[..., str]
) -> None:
    gpu_type = unique_gpu_type()
    create(kube_cluster, kube_namespace, gpu_pod("trainer", gpu_type))
    # The scheduler looked at it and found no node: Pending, Unschedulable.
    wait_until(
        lambda: (
            scheduled_condition(pod(kube_cluster, kube_namespace, "trainer")).get("reason")
            == "Unschedulable"
        ),
        30,
        "the scheduler to report the pod unschedulable",
    )
    p = pod(kube_cluster, kube_namespace, "trainer")
    assert p["status"]["phase"] == "Pending"
    assert "nodeName" not in p["spec"]

    node = kube_gpu_node(gpus=8, gpu_type=gpu_type, ready_delay_s=1)
    p = wait_phase(kube_cluster, kube_namespace, "trainer", "Running")
    assert p["spec"]["nodeName"] == node
    assert scheduled_condition(p)["status"] == "True"
    assert p["status"]["podIP"]


def test_gpu_node_reports_gpus_and_becomes_ready_after_its_delay(
    kube_cluster: DevCluster, kube_gpu_node: Callable[..., str]
) -> None:
    start = time.monotonic()
    node = kube_gpu_node(gpus=4, gpu_type="a100", ready_delay_s=4)
    n = kube_cluster.get_json("node", node)
    ready = {c["type"]: c["status"] for c in n["status"].get("conditions", [])}.get("Ready")
    assert ready != "True", "ready before its delay"
    kube_cluster.wait_node_schedulable(node, timeout_s=30)
    assert time.monotonic() - start >= 4
    n = kube_cluster.get_json("node", node)
    assert n["status"]["capacity"][GPU_RESOURCE] == "4"
    assert n["status"]["allocatable"][GPU_RESOURCE] == "4"
    assert n["metadata"]["labels"][GPU_TYPE_LABEL] == "a100"
    assert n["status"]["allocatable"]["cpu"] == "1k"


def test_node_created_with_its_own_allocatable_keeps_it(kube_cluster: DevCluster) -> None:
    # The kwok provider creates nodes with the pool's resources in status (as a kubelet would).
    name = f"kwok-own-{uuid.uuid4().hex[:6]}"
    manifest = gpu_node_manifest(
        name,
        gpus=2,
        allocatable={"cpu": "96", "memory": "1152Gi", "pods": "110", GPU_RESOURCE: "8"},
    )
    kube_cluster.kubectl("create", "-f", "-", input=json.dumps(manifest))
    try:
        kube_cluster.wait_node_schedulable(name, timeout_s=30)
        alloc = kube_cluster.get_json("node", name)["status"]["allocatable"]
        assert alloc == {"cpu": "96", "memory": "1152Gi", "pods": "110", GPU_RESOURCE: "8"}
    finally:
        kube_cluster.kubectl("delete", "node", name, "--wait=false")


def test_scheduler_counts_gpus_a_second_8_gpu_pod_does_not_fit(
    kube_cluster: DevCluster, kube_namespace: str, kube_gpu_node: Callable[..., str]
) -> None:
    gpu_type = unique_gpu_type()
    kube_gpu_node(gpus=8, gpu_type=gpu_type, wait_ready=True)
    create(kube_cluster, kube_namespace, gpu_pod("worker-0", gpu_type))
    wait_phase(kube_cluster, kube_namespace, "worker-0", "Running")
    create(kube_cluster, kube_namespace, gpu_pod("worker-1", gpu_type))
    wait_until(
        lambda: (
            "Insufficient nvidia.com/gpu"
            in scheduled_condition(pod(kube_cluster, kube_namespace, "worker-1")).get("message", "")
        ),
        30,
        "worker-1 to be refused for lack of GPUs",
    )
    # Once the first worker finishes, its GPUs are free again and the second is bound.
    kube_cluster.finish_pod(kube_namespace, "worker-0", "Succeeded")
    wait_phase(kube_cluster, kube_namespace, "worker-0", "Succeeded")
    wait_phase(kube_cluster, kube_namespace, "worker-1", "Running")


def test_pods_finish_when_annotated(
    kube_cluster: DevCluster, kube_namespace: str, kube_gpu_node: Callable[..., str]
) -> None:
    gpu_type = unique_gpu_type()
    kube_gpu_node(gpus=8, gpu_type=gpu_type, wait_ready=True)
    create(kube_cluster, kube_namespace, gpu_pod("ok", gpu_type, gpus=1))
    create(kube_cluster, kube_namespace, gpu_pod("bad", gpu_type, gpus=1))
    wait_phase(kube_cluster, kube_namespace, "ok", "Running")
    wait_phase(kube_cluster, kube_namespace, "bad", "Running")
    kube_cluster.finish_pod(kube_namespace, "ok", "Succeeded")
    kube_cluster.finish_pod(kube_namespace, "bad", "Failed")
    ok = wait_phase(kube_cluster, kube_namespace, "ok", "Succeeded")
    bad = wait_phase(kube_cluster, kube_namespace, "bad", "Failed")
    assert ok["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert bad["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1


def test_pod_with_run_duration_finishes_on_its_own(
    kube_cluster: DevCluster, kube_namespace: str, kube_gpu_node: Callable[..., str]
) -> None:
    gpu_type = unique_gpu_type()
    kube_gpu_node(gpus=8, gpu_type=gpu_type, wait_ready=True)
    annotations = {POD_RESULT_ANNOTATION: "Succeeded", POD_RUN_DURATION_ANNOTATION: "3s"}
    create(kube_cluster, kube_namespace, gpu_pod("timed", gpu_type, annotations=annotations))
    p = wait_phase(kube_cluster, kube_namespace, "timed", "Succeeded")
    terminated = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "Completed"
    # It ran for its duration (timestamps have whole seconds: 3 s is at least 2 apart).
    ran = _time(terminated["finishedAt"]) - _time(p["status"]["startTime"])
    assert ran >= dt.timedelta(seconds=2), ran


def _time(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_job_controller_completes_a_job_on_kwok_nodes(
    kube_cluster: DevCluster, kube_namespace: str, kube_gpu_node: Callable[..., str]
) -> None:
    # kube-controller-manager is really running: the Job controller makes the pods and
    # marks the Job complete once kwok finishes them.
    gpu_type = unique_gpu_type()
    kube_gpu_node(gpus=8, gpu_type=gpu_type, wait_ready=True)
    template = gpu_pod("unused", gpu_type, gpus=4, annotations={POD_RESULT_ANNOTATION: "Succeeded"})
    template["spec"]["restartPolicy"] = "Never"
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "two-workers"},
        "spec": {
            "completions": 2,
            "parallelism": 2,
            "template": {
                "metadata": {"annotations": template["metadata"]["annotations"]},
                "spec": template["spec"],
            },
        },
    }
    create(kube_cluster, kube_namespace, job)
    kube_cluster.kubectl(
        "wait",
        "-n",
        kube_namespace,
        "--for=condition=Complete",
        "job/two-workers",
        "--timeout=60s",
        timeout_s=70,
    )
    pods = kube_cluster.get_json("pods", "-n", kube_namespace, "-l", "job-name=two-workers")[
        "items"
    ]
    assert [p["status"]["phase"] for p in pods] == ["Succeeded", "Succeeded"]
