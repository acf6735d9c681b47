"""The operator end to end on the real control plane: DLJob gangs scale a kwok NodePool up
just enough, run, finish, and the pool goes back to zero; bad GPU types are reported."""

from __future__ import annotations

from pathlib import Path

from op_fixtures import cluster_fixture, scope_fixture  # noqa: F401 - fixtures
from op_harness import Cluster, NodeRecorder, Scope, controllers, dljob, dump, nodepool

from controller.devcluster import DevCluster


def test_a_gang_scales_the_pool_to_exactly_its_nodes_runs_succeeds_and_the_pool_returns_to_zero(
    kube_cluster: DevCluster, cluster: Cluster, scope: Scope, tmp_path: Path
) -> None:
    cluster.apply(nodepool(scope, provisioningDelaySeconds=2, idleTimeoutSeconds=4))
    with controllers(kube_cluster, scope, tmp_path) as (ctl,):
        cluster.apply(dljob(scope, "train", workers=2, gpus_per_worker=8, run_s=4))
        nodes = NodeRecorder(cluster)
        nodes.wait(lambda: cluster.pool_status().get("target") == 2, 30, "the pool's target 2")
        nodes.wait(lambda: cluster.job_phase("train") == "Running", 60, "the job to run")
        pods = cluster.pods("train")
        assert len(pods) == 2
        bound = {p["spec"]["nodeName"] for p in pods}
        assert bound == {n["metadata"]["name"] for n in cluster.pool_nodes()}, dump(pods)
        env = {e["name"]: e["value"] for e in pods[0]["spec"]["containers"][0]["env"]}
        assert env["WORLD_SIZE"] == "2"
        assert env["MASTER_ADDR"] == f"worker-0.train.{scope.namespace}.svc"
        nodes.wait(lambda: cluster.job_phase("train") == "Succeeded", 60, "the job to succeed")
        status = cluster.job(name="train")["status"]
        assert status["startTime"] and status["completionTime"]
        assert [w["phase"] for w in status["workerStates"]] == ["Succeeded", "Succeeded"]
        nodes.wait(lambda: not cluster.pool_nodes(), 60, "the pool to return to 0 nodes")
        cluster.wait(lambda: cluster.pool_status().get("target") == 0, 20, "status target 0")
        assert len(nodes.seen) == 2, f"nodes created: {sorted(nodes.seen)}"
        assert nodes.max_live == 2

        reasons = [e["reason"] for e in cluster.events_for("DLJob", "train")]
        for reason in ("Queued", "TriggeredScaleUp", "Admitted", "Running", "Succeeded"):
            assert reason in reasons, reasons
        pool_reasons = [e["reason"] for e in cluster.pool_events()]
        assert "ScaledUp" in pool_reasons and "ScaleDown" in pool_reasons, pool_reasons
        assert ctl.http("/healthz")[0] == 200
        assert ctl.http("/readyz")[0] == 200
        pool = scope.pool_name()
        assert ctl.metric("dlscaler_plan_actions_total", kind="scale-up", pool=pool) == 1.0
        assert ctl.metric("dlscaler_pool_nodes", pool=pool, state="ready") == 0.0
        assert (ctl.metric("dlscaler_provider_calls_total", pool=pool, operation="scale-up")
                == 1.0)  # fmt: skip
        assert ctl.metric("dlscaler_reconcile_seconds_count") > 0
        assert ctl.metric("dlscaler_pending_gangs") == 0.0


def test_a_gang_that_fits_on_nodes_already_in_flight_causes_no_extra_scale_up(
    kube_cluster: DevCluster, cluster: Cluster, scope: Scope, tmp_path: Path
) -> None:
    # Nodes take 6 s to become ready: the second job arrives while they are in flight.
    cluster.apply(nodepool(scope, provisioningDelaySeconds=6, idleTimeoutSeconds=30))
    with controllers(kube_cluster, scope, tmp_path) as (ctl,):
        nodes = NodeRecorder(cluster)
        cluster.apply(dljob(scope, "three-quarters", workers=3, gpus_per_worker=4, run_s=2))
        nodes.wait(lambda: cluster.pool_status().get("target") == 2, 30, "target 2 (12 of 16)")
        assert cluster.pool_status().get("ready", 0) == 0  # still in flight
        cluster.apply(dljob(scope, "quarter", workers=1, gpus_per_worker=4, run_s=2))
        for job in ("three-quarters", "quarter"):
            nodes.wait(lambda job=job: cluster.job_phase(job) == "Succeeded", 60, f"{job} done")
        assert len(nodes.seen) == 2, f"an extra scale-up happened: {sorted(nodes.seen)}"
        pool = scope.pool_name()
        assert ctl.metric("dlscaler_plan_actions_total", kind="scale-up", pool=pool) == 1.0
        quarter = cluster.job("quarter")["status"]
        assert {c["type"]: c["reason"] for c in quarter["conditions"]}["Schedulable"] in (
            "WaitingForNodes",
            "Admitted",
        )


def test_a_gpu_type_no_pool_offers_is_marked_unschedulable_once_and_never_scales(
    kube_cluster: DevCluster, cluster: Cluster, scope: Scope, tmp_path: Path
) -> None:
    cluster.apply(nodepool(scope))
    with controllers(kube_cluster, scope, tmp_path) as (ctl,):
        cluster.apply(dljob(scope, "exotic", gpu_type=f"h100-{scope.id}"))

        def unschedulable() -> bool:
            conds = (cluster.job("exotic").get("status") or {}).get("conditions") or []
            return any(c["type"] == "Schedulable" and c["status"] == "False" for c in conds)

        cluster.wait(unschedulable, 30, "the Schedulable=False condition")
        status = cluster.job("exotic")["status"]
        cond = next(c for c in status["conditions"] if c["type"] == "Schedulable")
        assert cond["reason"] == "NoFittingPool"
        assert f"h100-{scope.id}" in cond["message"] and scope.gpu_type in cond["message"]
        assert status["phase"] == "Queued"
        # Several passes later: one Event (not one per pass), and no node asked for.
        passes = ctl.metric("dlscaler_reconcile_seconds_count") or 0
        cluster.wait(
            lambda: (ctl.metric("dlscaler_reconcile_seconds_count") or 0) >= passes + 3,
            30,
            "three more passes",
        )
        warnings = [e for e in cluster.events_for("DLJob", "exotic") if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["Unschedulable"]
        assert "no pool offers GPU type" in warnings[0]["message"]
        assert cluster.pool_nodes() == []
        assert ctl.metric("dlscaler_pending_gpus", gpu_type=f"h100-{scope.id}") == 16.0
