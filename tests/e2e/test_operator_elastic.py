"""An elastic DLJob on the real control plane: it grows into a node another job left idle,
and shrinks when a rigid job arrives that would otherwise need a new node — the pool's
target does not grow."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from op_fixtures import cluster_fixture, scope_fixture  # noqa: F401 - fixtures
from op_harness import Cluster, NodeRecorder, Scope, controllers, dljob, dump, nodepool

from controller.clock import parse_time
from controller.devcluster import DevCluster

RESIZE_INTERVAL_S = 2


def elastic_dljob(scope: Scope, name: str, lo: int, hi: int, **kw: Any) -> dict[str, Any]:
    obj = dljob(scope, name, **kw)
    spec = obj["spec"]
    del spec["workers"]
    spec.update(minWorkers=lo, maxWorkers=hi)
    return obj


def test_an_elastic_job_grows_into_an_idle_node_and_shrinks_instead_of_a_scale_up(
    kube_cluster: DevCluster, cluster: Cluster, scope: Scope, tmp_path: Path
) -> None:
    # Idle nodes stay a minute: long enough to be grown into, never removed mid-test.
    cluster.apply(nodepool(scope, provisioningDelaySeconds=1, idleTimeoutSeconds=60))
    extra = (f"--elastic-resize-interval={RESIZE_INTERVAL_S}",)
    with controllers(kube_cluster, scope, tmp_path, extra=extra) as (ctl,):
        nodes = NodeRecorder(cluster)
        pool = scope.pool_name()
        cluster.apply(dljob(scope, "first", workers=1, run_s=7))
        nodes.wait(lambda: cluster.job_phase("first") == "Running", 30, "the first job to run")
        cluster.apply(elastic_dljob(scope, "elastic", 1, 2, run_s=600))

        def elastic_status() -> dict[str, Any]:
            return dict(cluster.job("elastic").get("status") or {})

        def running_with(workers: int) -> bool:
            status = elastic_status()
            return status.get("phase") == "Running" and status.get("workers") == workers

        # One more node for the elastic job's minimum; the first job holds the other.
        nodes.wait(lambda: running_with(1), 30, "the elastic job to run 1 worker")
        assert elastic_status().get("resizes") in (None, 0), dump(elastic_status())

        # The first job ends: the elastic job grows into its node.
        nodes.wait(lambda: running_with(2), 60, "the elastic job to grow to 2 workers")
        status = elastic_status()
        resized = {c["type"]: c for c in status["conditions"]}["Resized"]
        assert resized["reason"] == "GrewIntoIdleCapacity", dump(status)
        assert (status["resizes"], status["restarts"]) == (1, 0)
        assert ctl.metric("dlscaler_plan_actions_total", kind="grow", pool=pool) == 1.0
        pods = [p for p in cluster.pods("elastic") if not p["metadata"].get("deletionTimestamp")]
        assert len(pods) == 2
        for p in pods:
            env = {e["name"]: e["value"] for e in p["spec"]["containers"][0]["env"]}
            assert env["WORLD_SIZE"] == "2"
            assert p["metadata"]["labels"]["dlscaler.io/attempt"] == "1"
        assert len(nodes.seen) == 2

        # A rigid job arrives once the elastic job may be resized again: the elastic job
        # shrinks to make room, and no node is asked for.
        last = parse_time(status["lastResizeTime"]) or 0.0
        time.sleep(max(0.0, last + RESIZE_INTERVAL_S + 1 - time.time()))
        cluster.apply(dljob(scope, "rigid", workers=1, run_s=600))
        nodes.wait(lambda: cluster.job_phase("rigid") == "Running", 60, "the rigid job to run")
        nodes.wait(lambda: running_with(1), 30, "the elastic job to run 1 worker again")
        status = elastic_status()
        resized = {c["type"]: c for c in status["conditions"]}["Resized"]
        assert resized["reason"] == "ShrankToMakeRoom", dump(status)
        assert f"{scope.namespace}/rigid" in resized["message"]
        assert (status["resizes"], status["restarts"]) == (2, 0)
        assert ctl.metric("dlscaler_plan_actions_total", kind="shrink", pool=pool) == 1.0
        rigid_node = cluster.job("rigid")["status"]["workerStates"][0]["nodeName"]
        elastic_node = status["workerStates"][0]["nodeName"]
        assert rigid_node != elastic_node
        for _ in range(10):  # a few more passes: still no scale-up
            nodes.sample()
            time.sleep(0.2)
        assert len(nodes.seen) == 2 and nodes.max_live == 2, sorted(nodes.seen)
        assert cluster.pool_status().get("target") == 2
        events = [e for e in cluster.events_for("DLJob", "elastic") if e["reason"] == "Resized"]
        messages = sorted(e["message"] for e in events)
        assert len(messages) == 2 and "grew" in messages[0] and "shrank" in messages[1]
        rigid_reasons = [e["reason"] for e in cluster.events_for("DLJob", "rigid")]
        assert "TriggeredScaleUp" not in rigid_reasons, rigid_reasons
