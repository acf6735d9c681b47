"""DLService end to end: load measured through a Prometheus query API drives the replicas,
unschedulable replicas grow the pool, and a drop in load scales both back down."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from op_fixtures import cluster_fixture, scope_fixture  # noqa: F401 - fixtures
from op_harness import Cluster, Scope, controllers, dump, nodepool

from controller.devcluster import DevCluster
from controller.kube import custom_path, group_path
from controller.names import API_VERSION, DLSERVICES


class QueryApi:
    """Prometheus's ``/api/v1/query`` on loopback, answering with ``value`` (a vector of one
    sample per replica would be summed the same way) and keeping the queries it got."""

    def __init__(self) -> None:
        self.value = 0.0
        self.queries: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                from urllib.parse import parse_qs, urlparse

                url = urlparse(self.path)
                api.queries += parse_qs(url.query).get("query", [])
                body = json.dumps(
                    {
                        "status": "success",
                        "data": {
                            "resultType": "vector",
                            "result": [{"metric": {}, "value": [0, str(api.value)]}],
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def prometheus() -> Iterator[QueryApi]:
    api = QueryApi()
    api.thread.start()
    yield api
    api.server.shutdown()


def test_load_drives_replicas_and_unschedulable_replicas_grow_the_pool(
    kube_cluster: DevCluster,
    cluster: Cluster,
    scope: Scope,
    tmp_path: Path,
    prometheus: QueryApi,
) -> None:
    cluster.apply(nodepool(scope, idleTimeoutSeconds=3))
    query = 'sum(rate(http_requests_total{service="llm"}[1m]))'
    service = {
        "apiVersion": API_VERSION,
        "kind": "DLService",
        "metadata": {"name": "llm", "namespace": scope.namespace},
        "spec": {
            "minReplicas": 1,
            "maxReplicas": 4,
            "gpusPerReplica": 4,
            "gpuType": scope.gpu_type,
            "target": {"requestsPerSecondPerReplica": 10, "prometheusQuery": query},
            "template": {
                "spec": {
                    "containers": [
                        {"name": "srv", "image": "srv:1", "ports": [{"containerPort": 8000}]}
                    ]
                }
            },
        },
    }
    extra = (f"--prometheus-url={prometheus.url}", "--service-stabilization=3")
    prometheus.value = 35.0  # 3.5 replicas' worth -> 4 replicas x 4 GPUs -> two 8-GPU nodes
    with controllers(kube_cluster, scope, tmp_path, extra=extra):
        cluster.apply(service)

        def svc() -> dict[str, Any]:
            obj = cluster.kube.get(custom_path(DLSERVICES, scope.namespace, "llm"))
            assert obj is not None
            return obj

        cluster.wait(lambda: svc()["spec"].get("replicas") == 4, 30, "4 replicas wanted")
        cluster.wait(
            lambda: (svc().get("status") or {}).get("readyReplicas") == 4,
            60,
            "4 ready replicas on new nodes",
        )
        assert len(cluster.pool_nodes()) == 2
        assert query in prometheus.queries
        status = svc()["status"]
        assert status["selector"] == "dlscaler.io/dlservice=llm"
        assert status["currentRequestsPerSecondPerReplica"] > 0
        deployment = cluster.kube.get(group_path("apps/v1", "deployments", scope.namespace, "llm"))
        assert deployment is not None and deployment["spec"]["replicas"] == 4

        prometheus.value = 5.0  # one replica's worth: down after the stabilisation window
        cluster.wait(lambda: svc()["spec"].get("replicas") == 1, 30, "scale down to 1")
        cluster.wait(lambda: len(cluster.pool_nodes()) == 1, 60, "the idle node removed")
        reasons = [e["reason"] for e in cluster.events_for("DLService", "llm")]
        assert reasons.count("Rescaled") >= 2, dump(reasons)


def test_a_gpu_type_no_pool_offers_is_reported_once_and_cleared_when_a_pool_appears(
    kube_cluster: DevCluster, cluster: Cluster, scope: Scope, tmp_path: Path
) -> None:
    cluster.apply(nodepool(scope))
    wanted = f"h100-{scope.id}"
    service = {
        "apiVersion": API_VERSION,
        "kind": "DLService",
        "metadata": {"name": "rare", "namespace": scope.namespace},
        "spec": {
            "minReplicas": 1,
            "maxReplicas": 2,
            "gpusPerReplica": 4,
            "gpuType": wanted,
            "target": {"requestsPerSecondPerReplica": 10},
            "template": {"spec": {"containers": [{"name": "srv", "image": "srv:1"}]}},
        },
    }

    def schedulable() -> dict[str, Any]:
        obj = cluster.kube.get(custom_path(DLSERVICES, scope.namespace, "rare"))
        assert obj is not None
        conds = (obj.get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Schedulable"), {})

    def events(reason: str) -> list[dict[str, Any]]:
        return [e for e in cluster.events_for("DLService", "rare") if e["reason"] == reason]

    with controllers(kube_cluster, scope, tmp_path) as (ctl,):
        cluster.apply(service)
        cluster.wait(lambda: schedulable().get("status") == "False", 30, "Schedulable=False")
        cond = schedulable()
        assert cond["reason"] == "NoPoolOffersGpuType", dump(cond)
        assert repr(wanted) in cond["message"], cond["message"]
        assert f"{scope.pool_name()} ({scope.gpu_type}, 8 GPUs/node)" in cond["message"]
        # Passes run every second: several go by, and none repeats the Event.
        passes = ctl.metric("dlscaler_reconcile_seconds_count") or 0.0
        cluster.wait(
            lambda: (ctl.metric("dlscaler_reconcile_seconds_count") or 0.0) >= passes + 5,
            30,
            "five more passes",
        )
        (warning,) = events("Unschedulable")
        assert warning["type"] == "Warning" and repr(wanted) in warning["message"]
        assert schedulable()["lastTransitionTime"] == cond["lastTransitionTime"]
        assert not cluster.pool_nodes(), "a node was added for a type the pool does not have"

        cluster.apply(nodepool(scope, "h100", gpuType=wanted))
        cluster.wait(lambda: schedulable().get("status") == "True", 30, "Schedulable=True")
        assert schedulable()["reason"] == "PoolOffersGpuType"
        assert scope.pool_name("h100") in schedulable()["message"]
        cluster.wait(
            lambda: (
                (cluster.kube.get(custom_path(DLSERVICES, scope.namespace, "rare")) or {})
                .get("status", {})
                .get("readyReplicas")
                == 1
            ),
            60,
            "the replica running on a node of the new pool",
        )
        assert len(cluster.pool_nodes("h100")) == 1 and not cluster.pool_nodes()
        (cleared,) = events("Schedulable")
        assert cleared["type"] == "Normal"
        assert len(events("Unschedulable")) == 1
