"""DLService: replicas from load (HPA's rules), stabilised scale-down, the Deployment, and
unschedulable replicas as pending demand."""

from __future__ import annotations

from typing import Any

from ctl_objects import T0, pod

from controller.dljob import parse_pod
from controller.dlservice import (
    Stabilizer,
    parse_dlservice,
    pending_gangs,
    recommend,
    render_deployment,
    render_service,
)
from controller.names import GPU_RESOURCE, GPU_TYPE_LABEL, SERVICE_LABEL


def service(name: str = "llm", **spec: Any) -> dict[str, Any]:
    body = {
        "minReplicas": 1,
        "maxReplicas": 10,
        "gpusPerReplica": 2,
        "gpuType": "l4",
        "target": {"requestsPerSecondPerReplica": 50, "prometheusQuery": "sum(rate(x[1m]))"},
        "template": {
            "spec": {
                "containers": [
                    {"name": "srv", "image": "srv:1", "ports": [{"containerPort": 8000}]}
                ]
            }
        },
    }
    body.update(spec)
    return {
        "apiVersion": "dlscaler.io/v1alpha1",
        "kind": "DLService",
        "metadata": {"name": name, "namespace": "ns", "uid": "uid-svc", "generation": 3},
        "spec": body,
    }


def test_requests_per_second_give_replicas_by_ceiling_within_bounds():
    svc = parse_dlservice(service())
    assert recommend(svc, 2, 260.0) == 6  # 260 / 50 = 5.2 -> 6
    assert recommend(svc, 2, 10_000.0) == 10  # maxReplicas
    assert recommend(svc, 4, 0.0) == 1  # minReplicas


def test_a_load_within_ten_percent_of_the_target_keeps_the_count():
    svc = parse_dlservice(service())
    assert recommend(svc, 4, 210.0) == 4  # 4.2 replicas' worth: within tolerance
    assert recommend(svc, 4, 230.0) == 5


def test_gpu_utilisation_scales_the_current_count_by_the_ratio():
    svc = parse_dlservice(service(target={"gpuUtilization": 60}))
    assert recommend(svc, 4, 90.0) == 6
    assert recommend(svc, 4, 30.0) == 2
    assert recommend(svc, 4, 62.0) == 4


def test_scale_down_waits_for_the_window_but_scale_up_is_immediate():
    stab = Stabilizer(window_s=60)
    assert stab.settle("s", T0, 5) == 5
    assert stab.settle("s", T0 + 10, 2) == 5  # the dip is not trusted yet
    assert stab.settle("s", T0 + 20, 8) == 8  # up at once
    assert stab.settle("s", T0 + 75, 2) == 8  # 8 still within the last 60 s
    assert stab.settle("s", T0 + 81, 2) == 2


def test_the_deployment_requests_gpus_and_only_fits_nodes_of_its_type():
    svc = parse_dlservice(service())
    dep = render_deployment(svc, 3)
    assert dep["spec"]["replicas"] == 3
    pod_spec = dep["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["resources"]["limits"][GPU_RESOURCE] == "2"
    term = pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]
    assert term["matchExpressions"] == [{"key": GPU_TYPE_LABEL, "operator": "In", "values": ["l4"]}]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[SERVICE_LABEL] == "llm"
    assert dep["spec"]["selector"]["matchLabels"] == {SERVICE_LABEL: "llm"}
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "DLService"
    svc_obj = render_service(svc)
    assert svc_obj["spec"]["ports"] == [{"port": 8000, "targetPort": 8000}]


def test_unset_replicas_start_at_the_minimum_and_stay_within_bounds():
    assert parse_dlservice(service(minReplicas=2)).wanted == 2
    assert parse_dlservice(service(replicas=50)).wanted == 10


def test_only_replicas_the_scheduler_could_not_place_are_pending_demand():
    svc = parse_dlservice(service())

    def replica(name: str, unschedulable: bool, node: str = "") -> Any:
        obj = pod(name, node=node, gpus=2, phase="Pending" if not node else "Running")
        obj["metadata"]["labels"][SERVICE_LABEL] = "llm"
        obj["metadata"]["creationTimestamp"] = "2023-11-14T22:13:20Z"
        if unschedulable:
            obj["status"]["conditions"] = [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
            ]
        return parse_pod(obj)

    pods = [replica("a", True), replica("b", False), replica("c", False, node="n1")]
    (gang,) = pending_gangs([svc], pods)
    assert (gang.job_id, gang.workers, gang.gpus_per_worker, gang.gpu_type) == ("ns/a", 1, 2, "l4")
    assert gang.submit_s == T0
