"""The operator under faults, on the real control plane: a controller killed mid-scale-up,
pools whose provider fails or whose nodes never become ready, a killed leader."""

from __future__ import annotations

import json
import time
from pathlib import Path

from op_fixtures import cluster_fixture, scope_fixture  # noqa: F401 - fixtures
from op_harness import (
    Cluster,
    ControllerProcess,
    NodeRecorder,
    Scope,
    controllers,
    dljob,
    dump,
    nodepool,
)

from controller.devcluster import DevCluster
from controller.kube import core_path


def history_points(cluster: Cluster, scope: Scope) -> tuple[float, int]:
    cm = cluster.kube.get(core_path("configmaps", scope.namespace, f"dlscaler-state-{scope.id}"))
    if cm is None or "demand" not in (cm.get("data") or {}):
        return 0.0, 0
    doc = json.loads(cm["data"]["demand"])
    return float(doc["startSeconds"]), int(doc["points"])


def test_a_controller_killed_right_after_asking_for_nodes_restarts_without_a_second_scale_up(
    kube_cluster: DevCluster, cluster: Cluster, scope: Scope, tmp_path: Path
) -> None:
    # Nodes take 8 s to become ready, so the restart happens while they are in flight.
    cluster.apply(nodepool(scope, provisioningDelaySeconds=8, idleTimeoutSeconds=30))
    first = ControllerProcess(kube_cluster, scope, tmp_path, name="first").start()
    try:
        nodes = NodeRecorder(cluster)
        cluster.apply(dljob(scope, "train", workers=2, gpus_per_worker=8, run_s=3))
        nodes.wait(lambda: len(nodes.seen) == 2, 30, "the scale-up to 2 nodes")
        first.kill()  # right after it asked: no Lease release, no state saved on exit
    finally:
        first.kill()
    assert cluster.pool_status().get("ready", 0) == 0, "nodes should still be in flight"
    start_before, points_before = history_points(cluster, scope)
    assert points_before > 0, "the demand history was never persisted"
    killed_at = time.time()

    with controllers(kube_cluster, scope, tmp_path, "second") as (second,):
        nodes.wait(lambda: cluster.job_phase("train") == "Succeeded", 90, "the job to finish")
        assert len(nodes.seen) == 2, f"duplicate scale-up after restart: {sorted(nodes.seen)}"
        assert nodes.max_live == 2
        pool = scope.pool_name()
        assert second.metric("dlscaler_plan_actions_total", kind="scale-up", pool=pool) is None
        # The history continued where the first controller left it (same start, more points).
        cluster.wait(lambda: history_points(cluster, scope)[1] > points_before, 20,
                     "the restarted controller to extend the history")  # fmt: skip
        start_after, points_after = history_points(cluster, scope)
        assert start_after == start_before
        assert points_after >= points_before + int(time.time() - killed_at) - 3


def test_a_failing_pool_does_not_stop_another_pools_scale_up(
    kube_cluster: DevCluster, cluster: Cluster, scope: Scope, tmp_path: Path
) -> None:
    broken_type = f"t4-{scope.id}"
    cluster.apply(
        nodepool(scope, "broken", gpuType=broken_type, kwok={"availableNodes": 0}),
        nodepool(scope, "healthy"),
    )
    with controllers(kube_cluster, scope, tmp_path):
        cluster.apply(
            dljob(scope, "stuck", gpu_type=broken_type, workers=1),
            dljob(scope, "fine", workers=2),
        )
        cluster.wait(lambda: cluster.job_phase("fine") == "Succeeded", 60, "the healthy job")
        assert len(cluster.pool_nodes("healthy")) == 2 or cluster.pool_status("healthy")["target"]
        broken = cluster.pool_status("broken")
        assert broken["lastError"].startswith("capacity"), dump(broken)
        available = {c["type"]: c for c in broken["conditions"]}["Available"]
        assert available["status"] == "False" and available["reason"] == "BackedOff"
        assert cluster.pool_nodes("broken") == []
        failed = [e for e in cluster.pool_events("broken") if e["reason"] == "ScaleFailed"]
        assert failed and failed[0]["type"] == "Warning"
        stuck = cluster.job("stuck")["status"]
        assert stuck["phase"] == "Queued"
        cond = {c["type"]: c for c in stuck["conditions"]}["Schedulable"]
        assert cond["status"] == "True" and "backed off" in cond["message"], dump(stuck)


def test_a_pool_out_of_capacity_sends_the_gang_to_the_next_fitting_pool(
    kube_cluster: DevCluster, cluster: Cluster, scope: Scope, tmp_path: Path
) -> None:
    cluster.apply(
        nodepool(scope, "cheap", pricePerHour=5.0, kwok={"availableNodes": 0}),
        nodepool(scope, "dear", pricePerHour=20.0),
    )
    with controllers(kube_cluster, scope, tmp_path):
        cluster.apply(dljob(scope, "train", workers=2))
        cluster.wait(lambda: cluster.job_phase("train") == "Succeeded", 60, "the job")
        dear = {n["metadata"]["name"] for n in cluster.pool_nodes("dear")}
        placed = {w["nodeName"] for w in cluster.job("train")["status"]["workerStates"]}
        assert placed and placed <= dear
        assert cluster.pool_nodes("cheap") == []
        cheap_events = [e["reason"] for e in cluster.pool_events("cheap")]
        assert "ScaleFailed" in cheap_events


def test_nodes_not_ready_within_the_max_provisioning_time_are_given_back_and_the_gang_moves(
    kube_cluster: DevCluster, cluster: Cluster, scope: Scope, tmp_path: Path
) -> None:
    # The cheap pool's nodes would take 10 minutes; the controller waits 6 s at most.
    cluster.apply(
        nodepool(scope, "slow", pricePerHour=5.0, provisioningDelaySeconds=600),
        nodepool(scope, "fast", pricePerHour=20.0, provisioningDelaySeconds=1),
    )
    with controllers(kube_cluster, scope, tmp_path, extra=("--max-provisioning=6",)):
        slow = NodeRecorder(cluster, "slow")
        cluster.apply(dljob(scope, "train", workers=1))
        slow.wait(lambda: len(slow.seen) == 1, 20, "the slow pool to be asked first")
        slow.wait(lambda: cluster.job_phase("train") == "Succeeded", 60, "the job")
        fast = {n["metadata"]["name"] for n in cluster.pool_nodes("fast")}
        placed = {w["nodeName"] for w in cluster.job("train")["status"]["workerStates"]}
        assert placed <= fast
        slow.wait(lambda: not cluster.pool_nodes("slow"), 30, "the stuck node to be given back")
        reasons = [e["reason"] for e in cluster.pool_events("slow")]
        assert "ProvisioningTimeout" in reasons, reasons
        assert "not ready" in cluster.pool_status("slow")["lastError"]


def test_the_standby_takes_over_within_30_s_when_the_leader_is_killed(
    kube_cluster: DevCluster, cluster: Cluster, scope: Scope, tmp_path: Path
) -> None:
    cluster.apply(nodepool(scope, idleTimeoutSeconds=30))
    with controllers(kube_cluster, scope, tmp_path, "a", "b") as replicas:
        cluster.wait(lambda: sum(r.leading() for r in replicas) == 1, 20, "one leader")
        leader = next(r for r in replicas if r.leading())
        standby = next(r for r in replicas if r is not leader)
        cluster.apply(dljob(scope, "before", workers=1))
        cluster.wait(lambda: cluster.job_phase("before") == "Succeeded", 60, "the first job")
        writers = {e.get("reportingInstance") for e in cluster.events_for("DLJob", "before")}
        assert writers == {leader.identity}, "only the leader may act"
        assert standby.http("/readyz")[0] == 200  # a standby is ready to take over

        leader.kill()
        killed = time.monotonic()
        cluster.wait(standby.leading, 30, "the standby to take over")
        assert time.monotonic() - killed < 30
        cluster.apply(dljob(scope, "after", workers=1))
        cluster.wait(lambda: cluster.job_phase("after") == "Succeeded", 60, "the second job")
        writers = {e.get("reportingInstance") for e in cluster.events_for("DLJob", "after")}
        assert writers == {standby.identity}


def test_scale_down_respects_a_pod_disruption_budget_and_never_drains_a_running_worker(
    kube_cluster: DevCluster, cluster: Cluster, scope: Scope, tmp_path: Path
) -> None:
    cluster.apply(nodepool(scope, idleTimeoutSeconds=8))
    with controllers(kube_cluster, scope, tmp_path):
        cluster.apply(
            dljob(scope, "long", workers=1, run_s=120),
            dljob(scope, "short", workers=1, run_s=1),
        )
        cluster.wait(lambda: cluster.job_phase("short") == "Succeeded", 60, "the short job")
        busy = cluster.job("long")["status"]["workerStates"][0]["nodeName"]
        idle = cluster.job("short")["status"]["workerStates"][0]["nodeName"]
        assert busy != idle
        # Something else runs on the idle node, guarded by a budget that allows no eviction.
        ns = scope.namespace
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "guarded", "namespace": ns, "labels": {"app": "guarded"}},
                "spec": {"nodeName": idle, "containers": [{"name": "c", "image": "c:1"}]},
            },
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "guarded", "namespace": ns},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
            },
        )

        def node(name: str) -> dict | None:
            return next((n for n in cluster.pool_nodes() if n["metadata"]["name"] == name), None)

        cluster.wait(
            lambda: bool((node(idle) or {}).get("spec", {}).get("unschedulable")),
            40,
            "the idle node to be cordoned for removal",
        )
        time.sleep(5)  # several passes: the budget keeps refusing the eviction
        assert node(idle) is not None, "a node was removed despite its PodDisruptionBudget"
        assert cluster.pool_status()["draining"] == 1
        busy_node = node(busy)
        assert busy_node is not None and not busy_node["spec"].get("unschedulable")
        assert cluster.job_phase("long") == "Running"

        cluster.dev.kubectl("delete", "pdb", "guarded", "-n", ns)
        cluster.wait(lambda: node(idle) is None, 60, "the drained node to be removed")
        assert node(busy) is not None and cluster.job_phase("long") == "Running"
        reasons = [e["reason"] for e in cluster.pool_events()]
        assert "ScaleDown" in reasons
