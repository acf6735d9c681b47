"""Arrival scenarios end to end: a controller started on a state ConfigMap that holds a
previous controller's demand history and arrivals keeps room for a 2x8-GPU gang like the one
that arrived a moment ago (the pool grows before any job waits), observes the DLJobs created
after it once each, grows for both shapes, and saves them back beside the history."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import yaml
from op_fixtures import cluster_fixture, scope_fixture  # noqa: F401 - fixtures
from op_harness import Cluster, Scope, controllers, dljob, nodepool

from controller.arrivals import Arrival, decode, encode
from controller.devcluster import DevCluster
from controller.kube import core_path
from controller.state import ARRIVALS_KEY, KEY, DemandHistory
from dlscaler.model import Gang

DAY = 86_400.0


def seeded_history(now: float) -> DemandHistory:
    """Four days of small daily demand at five-minute steps: enough for the forecaster to
    choose a model it trusts, too little to grow a node for."""
    h = DemandHistory(step_s=300, max_points=20_160)
    t = now - 4 * DAY
    while t < now:
        h.observe(t, 2 + 2 * math.sin(2 * math.pi * (t % DAY) / DAY))
        t += 300
    return h


def test_a_restarted_controller_keeps_room_for_the_gangs_that_arrived_and_saves_new_ones(
    kube_cluster: DevCluster, cluster: Cluster, scope: Scope, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "policy": "predictive",
                "idleTimeoutSeconds": 60,
                # Lead time 20 x 5 s: the arrival windows are 100 s long.
                "predictive": {"arrivalQuantile": 0.99, "leadTimeFactor": 20},
            }
        )
    )
    cluster.apply(nodepool(scope, provisioningDelaySeconds=5, idleTimeoutSeconds=60, maxNodes=4))
    now = time.time()
    arrived = Gang("ns/before-restart", now - 2, workers=2, gpus_per_worker=8,
                   gpu_type=scope.gpu_type)  # fmt: skip
    state_path = core_path("configmaps", scope.namespace, f"dlscaler-state-{scope.id}")
    cluster.kube.create(
        core_path("configmaps", scope.namespace),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"dlscaler-state-{scope.id}"},
            "data": {
                KEY: seeded_history(now).encode(),
                ARRIVALS_KEY: encode([Arrival(arrived.submit_s, "", arrived)], {}),
            },
        },
    )

    def saved() -> list[Arrival]:
        obj = cluster.kube.get(state_path)
        assert obj is not None
        return decode(obj["data"][ARRIVALS_KEY])[0]

    extra = (f"--policy-config={policy}", "--history-step=300")
    with controllers(kube_cluster, scope, tmp_path, extra=extra) as (ctl,):
        # No job waits, yet the pool grows: room for one more 2x8 gang.
        cluster.wait(lambda: cluster.pool_status().get("target") == 2, 40, "target 2 for room")
        messages = [e["message"] for e in cluster.pool_events() if e["reason"] == "ScaledUp"]
        assert any("room for the p99 of arrivals" in m for m in messages), messages
        assert "arrivals: 1 from the state ConfigMap" in ctl.log_tail(200)

        # A 2x8 job takes that room at once; the two arrivals together ask for two more
        # nodes (the pool's maximum caps the second gang's room).
        cluster.apply(dljob(scope, "train", workers=2, gpus_per_worker=8, run_s=30))
        cluster.wait(lambda: cluster.job_phase("train") == "Running", 30, "the job to run")
        cluster.wait(lambda: cluster.pool_status().get("target") == 4, 30, "target 4 for room")
        cluster.wait(lambda: len(saved()) == 2, 20, "both arrivals saved")
        passes = ctl.metric("dlscaler_reconcile_seconds_count") or 0
        cluster.wait(
            lambda: (ctl.metric("dlscaler_reconcile_seconds_count") or 0) >= passes + 3,
            20,
            "three more passes",
        )
        kept = saved()
        assert len(kept) == 2, [a.gang for a in kept]  # re-listed each pass, counted once
        assert [(a.gang.workers, a.gang.gpus_per_worker, a.gang.gpu_type) for a in kept] == [
            (2, 8, scope.gpu_type)
        ] * 2
        assert abs(kept[0].time_s - arrived.submit_s) < 1e-3  # kept to the millisecond
        obj = cluster.kube.get(state_path)
        assert obj is not None and json.loads(obj["data"][KEY])["points"] > 1_000
