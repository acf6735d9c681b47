"""DLService: replicas from load (HPA's rules), stabilised scale-down, the Deployment,
unschedulable replicas as pending demand, and the Schedulable condition (said once, cleared
when a pool appears)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

from ctl_objects import T0, pod

from controller.dljob import parse_pod
from controller.dlservice import (
    Stabilizer,
    parse_dlservice,
    pending_gangs,
    recommend,
    render_deployment,
    render_service,
    schedulability,
)
from controller.events import EventRecorder
from controller.kube import ApiError, Kube, custom_path
from controller.names import DLSERVICES, GPU_RESOURCE, GPU_TYPE_LABEL, SERVICE_LABEL
from controller.serving import ServiceReconciler
from dlscaler.model import PoolSpec


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


def test_requests_per_second_give_replicas_by_ceiling_within_bounds() -> None:
    svc = parse_dlservice(service())
    assert recommend(svc, 2, 260.0) == 6  # 260 / 50 = 5.2 -> 6
    assert recommend(svc, 2, 10_000.0) == 10  # maxReplicas
    assert recommend(svc, 4, 0.0) == 1  # minReplicas


def test_a_load_within_ten_percent_of_the_target_keeps_the_count() -> None:
    svc = parse_dlservice(service())
    assert recommend(svc, 4, 210.0) == 4  # 4.2 replicas' worth: within tolerance
    assert recommend(svc, 4, 230.0) == 5


def test_gpu_utilisation_scales_the_current_count_by_the_ratio() -> None:
    svc = parse_dlservice(service(target={"gpuUtilization": 60}))
    assert recommend(svc, 4, 90.0) == 6
    assert recommend(svc, 4, 30.0) == 2
    assert recommend(svc, 4, 62.0) == 4


def test_scale_down_waits_for_the_window_but_scale_up_is_immediate() -> None:
    stab = Stabilizer(window_s=60)
    assert stab.settle("s", T0, 5) == 5
    assert stab.settle("s", T0 + 10, 2) == 5  # the dip is not trusted yet
    assert stab.settle("s", T0 + 20, 8) == 8  # up at once
    assert stab.settle("s", T0 + 75, 2) == 8  # 8 still within the last 60 s
    assert stab.settle("s", T0 + 81, 2) == 2


def test_the_deployment_requests_gpus_and_only_fits_nodes_of_its_type() -> None:
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


def test_unset_replicas_start_at_the_minimum_and_stay_within_bounds() -> None:
    assert parse_dlservice(service(minReplicas=2)).wanted == 2
    assert parse_dlservice(service(replicas=50)).wanted == 10


def test_only_replicas_the_scheduler_could_not_place_are_pending_demand() -> None:
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


# --- Schedulable: can any NodePool ever hold a replica? --------------------------------------


def pool_spec(name: str, gpu_type: str, gpus_per_node: int = 8) -> PoolSpec:
    return PoolSpec(
        name=name, gpus_per_node=gpus_per_node, max_nodes=4, price_usd_per_hour=1.0,
        gpu_type=gpu_type,
    )  # fmt: skip


def test_a_gpu_type_no_pool_offers_names_the_type_and_the_pools() -> None:
    svc = parse_dlservice(service(gpuType="h100"))
    sched = schedulability(svc, [pool_spec("a100-pool", "a100"), pool_spec("l4-pool", "l4")])
    assert (sched.schedulable, sched.reason) == (False, "NoPoolOffersGpuType")
    assert "'h100'" in sched.message
    assert "a100-pool (a100, 8 GPUs/node)" in sched.message
    assert "l4-pool (l4, 8 GPUs/node)" in sched.message


def test_without_any_pool_the_message_says_so() -> None:
    sched = schedulability(parse_dlservice(service(gpuType="h100")), [])
    assert (sched.schedulable, sched.reason) == (False, "NoPoolOffersGpuType")
    assert "there are no NodePools" in sched.message


def test_a_replica_larger_than_every_node_of_its_type_is_unschedulable() -> None:
    svc = parse_dlservice(service(gpuType="l4", gpusPerReplica=8))
    sched = schedulability(svc, [pool_spec("l4-small", "l4", 4), pool_spec("a100", "a100")])
    assert (sched.schedulable, sched.reason) == (False, "NoPoolFitsReplica")
    assert "needs 8 GPUs" in sched.message and "has 4" in sched.message
    assert "l4-small" in sched.message and "a100" not in sched.message


def test_a_pool_of_the_type_with_room_for_a_replica_makes_it_schedulable() -> None:
    svc = parse_dlservice(service(gpuType="l4"))
    sched = schedulability(svc, [pool_spec("a100", "a100"), pool_spec("l4-pool", "l4")])
    assert (sched.schedulable, sched.reason) == (True, "PoolOffersGpuType")
    assert "l4-pool" in sched.message and "a100" not in sched.message


def test_any_gpu_type_fits_every_pool_and_no_gpus_need_no_pool() -> None:
    assert schedulability(
        parse_dlservice(service(gpuType="")), [pool_spec("p", "a100")]
    ).schedulable
    cpu_only = schedulability(parse_dlservice(service(gpusPerReplica=0)), [])
    assert (cpu_only.schedulable, cpu_only.reason) == (True, "NoGpusRequested")


def test_a_long_pool_list_is_cut_short_in_the_message() -> None:
    pools = [pool_spec(f"pool-{i:03d}", "a100") for i in range(50)]
    sched = schedulability(parse_dlservice(service(gpuType="h100")), pools)
    assert "pool-019" in sched.message and "pool-020" not in sched.message
    assert "and 30 more" in sched.message


class MemoryKube:
    """The API calls the service reconciler makes, on objects kept in memory: create, get,
    and JSON merge patches (RFC 7386) applied to the stored object, status included."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.created: list[tuple[str, dict[str, Any]]] = []

    def put(self, path: str, obj: dict[str, Any]) -> None:
        self.objects[path] = copy.deepcopy(obj)

    def get(self, path: str) -> dict[str, Any] | None:
        obj = self.objects.get(path)
        return copy.deepcopy(obj) if obj is not None else None

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        name = f"{path}/{body['metadata']['name']}"
        if name in self.objects:
            raise ApiError(409, "already exists", reason="AlreadyExists", path=path)
        self.objects[name] = copy.deepcopy(body)
        self.created.append((path, copy.deepcopy(body)))
        return copy.deepcopy(body)

    def create_or_get(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        try:
            return self.create(path, body), True
        except ApiError:
            return self.objects[f"{path}/{body['metadata']['name']}"], False

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        target = path.removesuffix("/status")
        if target not in self.objects:
            raise ApiError(404, "not found", reason="NotFound", path=path)
        merge(self.objects[target], patch)
        return copy.deepcopy(self.objects[target])

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [b for p, b in self.created if b.get("kind") == "Event" and b["reason"] == reason]


def merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict):
            if not isinstance(into.get(key), dict):
                into[key] = {}
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def reconciler(kube: MemoryKube, clock: Callable[[], float]) -> ServiceReconciler:
    api = cast(Kube, kube)  # duck-typed: the calls the reconciler makes, kept in memory
    events = EventRecorder(api, identity="test", clock=clock)
    return ServiceReconciler(api, events, prometheus=None, window_s=60, clock=clock)


def test_an_unservable_service_is_told_once_and_cleared_when_a_pool_appears() -> None:
    kube = MemoryKube()
    clock = [T0]
    path = custom_path(DLSERVICES, "ns", "llm")
    kube.put(path, service(gpuType="h100", target={"requestsPerSecondPerReplica": 50}))
    serving = reconciler(kube, lambda: clock[0])
    pools = [pool_spec("l4-pool", "l4")]

    def passes(count: int) -> dict[str, Any]:
        for _ in range(count):
            clock[0] += 60  # past the Event recorder's own 10-minute repeat filter
            obj = kube.get(path)
            assert obj is not None
            serving.reconcile(parse_dlservice(obj), None, pools)
        obj = kube.get(path)
        assert obj is not None
        return dict(obj.get("status") or {})

    status = passes(1)
    (cond,) = status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "Schedulable", "False", "NoPoolOffersGpuType",
    )  # fmt: skip
    assert "'h100'" in cond["message"] and "l4-pool" in cond["message"]
    assert status["message"] == cond["message"]
    first_transition = cond["lastTransitionTime"]
    status = passes(60)  # an hour of passes says nothing new
    assert status["conditions"][0]["lastTransitionTime"] == first_transition
    (warning,) = kube.events("Unschedulable")
    assert warning["type"] == "Warning" and "'h100'" in warning["message"]
    assert warning["involvedObject"]["kind"] == "DLService"

    pools.append(pool_spec("h100-pool", "h100"))
    status = passes(5)
    (cond,) = status["conditions"]
    assert (cond["status"], cond["reason"]) == ("True", "PoolOffersGpuType")
    assert "h100-pool" in cond["message"]
    assert cond["lastTransitionTime"] != first_transition
    assert "message" not in status
    (cleared,) = kube.events("Schedulable")
    assert cleared["type"] == "Normal"
    assert len(kube.events("Unschedulable")) == 1


def test_without_the_pool_list_the_condition_is_left_alone() -> None:
    kube = MemoryKube()
    path = custom_path(DLSERVICES, "ns", "llm")
    kube.put(path, service(gpuType="h100"))
    serving = reconciler(kube, lambda: T0)
    obj = kube.get(path)
    assert obj is not None
    serving.reconcile(parse_dlservice(obj), None)
    obj = kube.get(path)
    assert obj is not None
    assert "conditions" not in obj["status"] and not kube.events("Unschedulable")
    assert obj["status"]["observedGeneration"] == 3  # the rest of the status is written
