"""Consolidation end to end: with ``consolidateWithinSeconds`` set, the controller cordons the
kwok node whose only job is about to finish (no worker evicted), removes it once the job is
done, and keeps the pool's other node, whose job runs long, in service.

The controller starts on a state ConfigMap holding a low demand history (so the predictive
policy trusts its forecast and has a node to spare) and on a finished-jobs ConfigMap that
says jobs of queue ``quick`` run seconds and those of queue ``slow`` hours (the runtime
regression answers by queue until it has enough jobs to train on)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import yaml
from op_fixtures import cluster_fixture, scope_fixture  # noqa: F401 - fixtures
from op_harness import Cluster, Scope, controllers, dljob, nodepool

from controller.devcluster import DevCluster
from controller.kube import core_path
from controller.names import CONSOLIDATING_ANNOTATION
from controller.runtimes import KEY as FINISHED_KEY
from controller.runtimes import SUFFIX, FinishedJob, encode
from controller.state import KEY as DEMAND_KEY
from controller.state import DemandHistory
from dlscaler.model import Gang

DAY = 86_400.0


def low_demand(now: float) -> DemandHistory:
    """Four days of one or two GPUs in a daily cycle, at five-minute steps."""
    h = DemandHistory(step_s=300, max_points=20_160)
    t = now - 4 * DAY
    while t < now:
        h.observe(t, 1.5 + 0.5 * math.sin(2 * math.pi * (t % DAY) / DAY))
        t += 300
    return h


def finished_jobs(scope: Scope, now: float) -> list[FinishedJob]:
    out = []
    for i, (queue, run_s) in enumerate([("quick", 20.0)] * 3 + [("slow", 36_000.0)] * 3):
        gang = Gang(
            f"{scope.namespace}/old-{i}", now - DAY, workers=1, gpus_per_worker=8,
            gpu_type=scope.gpu_type, queue=queue, duration_s=run_s,
            attributes={"framework": "pytorch", "user": scope.namespace},
        )  # fmt: skip
        out.append(FinishedJob(f"old-{i}", now - DAY + run_s, run_s, gang))
    return out


def node_of(cluster: Cluster, job: str) -> str:
    [pod] = cluster.pods(job)
    return str(pod["spec"].get("nodeName") or "")


def node_obj(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return cluster.kube.get(core_path("nodes", name=name))


def test_the_node_of_a_job_about_to_finish_is_cordoned_and_removed_the_other_stays(
    kube_cluster: DevCluster, cluster: Cluster, scope: Scope, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "policy": "predictive",
        "idleTimeoutSeconds": 60,
        "predictive": {"consolidateWithinSeconds": 600, "hysteresisNodes": 0,
                       "arrivalQuantile": 0, "arrivalBudget": 0},
    }))  # fmt: skip
    cluster.apply(nodepool(scope, provisioningDelaySeconds=1, idleTimeoutSeconds=60, maxNodes=2))
    now = time.time()
    state = f"dlscaler-state-{scope.id}"
    for name, data in (
        (state, {DEMAND_KEY: low_demand(now).encode()}),
        (state + SUFFIX, {FINISHED_KEY: encode(finished_jobs(scope, now))}),
    ):
        cluster.kube.create(
            core_path("configmaps", scope.namespace),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data},
        )

    extra = (f"--policy-config={policy}", "--history-step=300")
    with controllers(kube_cluster, scope, tmp_path, extra=extra) as (ctl,):
        cluster.apply(
            dljob(scope, "short", workers=1, run_s=20, queue="quick"),
            dljob(scope, "long", workers=1, run_s=120, queue="slow"),
        )

        def both_run() -> bool:
            return {cluster.job_phase("short"), cluster.job_phase("long")} == {"Running"}

        cluster.wait(both_run, 30, "both jobs to run")
        short, long = node_of(cluster, "short"), node_of(cluster, "long")
        assert short and long and short != long

        def cordoned(name: str) -> bool:
            obj = node_obj(cluster, name)
            return bool(obj and obj["spec"].get("unschedulable"))

        # Cordoned while its job still runs; the job is not disturbed.
        cluster.wait(lambda: cordoned(short), 15, f"{short} to be cordoned")
        assert cluster.job_phase("short") == "Running"
        obj = node_obj(cluster, short)
        assert obj is not None and CONSOLIDATING_ANNOTATION in obj["metadata"]["annotations"]
        messages = [e["message"] for e in cluster.pool_events() if e["reason"] == "Cordoned"]
        assert any(m.startswith(f"cordoned {short} ") for m in messages), messages
        cordons = ctl.metric("dlscaler_plan_actions_total", kind="cordon", pool=scope.pool_name())
        assert cordons is not None and cordons >= 1.0

        # Gone once the job has finished; the long job's node stays in service.
        cluster.wait(lambda: node_obj(cluster, short) is None, 60, f"{short} to be removed")
        assert cluster.job_phase("short") == "Succeeded"
        assert not (cluster.job("short").get("status") or {}).get("restarts")
        assert cluster.job_phase("long") == "Running"
        assert not cordoned(long)
        assert [n["metadata"]["name"] for n in cluster.pool_nodes()] == [long]
        reasons = [e["reason"] for e in cluster.pool_events()]
        assert "Uncordoned" not in reasons and "DrainTimeout" not in reasons, reasons
        assert "cordoned to consolidate, and now empty" in " ".join(
            e["message"] for e in cluster.pool_events() if e["reason"] == "ScaleDown"
        )
