"""The kwok provider against the real control plane: the provider contract, and 200
randomised operations through 20% throttling and 5% 5xx.

Faults are injected in pykube's HTTP transport (a subclass of its own adapter, so client
certificates still work): refusals are Kubernetes ``Status`` answers, a lost response is a
500 after the API server did the work. The truth is read with a second, fault-free client.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections import Counter
from typing import Any

import pykube
import pytest
import requests
from pykube.http import KubernetesHTTPAdapter
from requests.structures import CaseInsensitiveDict

from controller.devcluster import DevCluster, wait_until
from dlscaler.config import PoolModel
from dlscaler.pool import InstanceState, NodePoolProvider
from providers import build_provider
from providers.contract import CHECKS, Fault, NotApplicable, Target
from providers.fake import FaultRates
from providers.kwok import KwokProvider
from providers.retry import Retrier, RetryPolicy, RetryStats, no_sleep
from providers.template import POOL_LABEL

MAX_ATTEMPTS = 4
_KINDS = {"GET": "read", "POST": "scale", "DELETE": "delete"}


def _status(
    request: requests.PreparedRequest, code: int, reason: str, message: str
) -> requests.Response:
    response = requests.Response()
    response.status_code = code
    response.reason = reason
    response.url = request.url or ""
    response.request = request
    response.headers = CaseInsensitiveDict({"content-type": "application/json"})
    if code == 429:
        response.headers["Retry-After"] = "1"
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    response._content = json.dumps(body).encode()
    return response


class FaultyKubeAdapter(KubernetesHTTPAdapter):  # type: ignore[misc]
    """pykube's transport, failing some requests on the way (scripted or at rates)."""

    def __init__(self, kube_config: pykube.KubeConfig, **kwargs: Any) -> None:
        super().__init__(kube_config, **kwargs)
        self.rates = FaultRates()
        self.rng = random.Random(0)
        self.scripted: list[list[Any]] = []
        self.requests: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.lock = threading.Lock()

    def _pick(self, kind: str) -> str:
        with self.lock:
            self.requests[kind] += 1
            for entry in self.scripted:
                fault, target, left = entry
                if left > 0 and target in (kind, "any"):
                    entry[2] -= 1
                    self.faults[fault] += 1
                    return str(fault)
            r = self.rates
            for fault, rate in (
                ("throttle", r.throttle),
                ("server_error", r.server_error),
                ("lost_response", r.lost_response if kind != "read" else 0.0),
            ):
                if rate and self.rng.random() < rate:
                    self.faults[fault] += 1
                    return fault
            return ""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        fault = self._pick(_KINDS.get(request.method or "", "other"))
        if fault == "throttle":
            return _status(
                request, 429, "TooManyRequests", "the server has received too many requests"
            )
        if fault == "server_error":
            return _status(
                request, 500, "InternalError", "an error on the server has prevented the request"
            )
        if fault == "permission":
            verb = {"GET": "list", "POST": "create", "DELETE": "delete"}.get(
                request.method or "", "get"
            )
            return _status(
                request,
                403,
                "Forbidden",
                f'nodes is forbidden: User "system:serviceaccount:dlscaler:dlscaler" cannot {verb} '
                'resource "nodes" in API group "" at the cluster scope',
            )
        if fault == "timeout":
            raise requests.exceptions.ReadTimeout("injected: no answer in time")
        response = super().send(request, **kwargs)
        if fault == "lost_response" and response.ok:
            return _status(request, 500, "InternalError", "injected after the change was made")
        return response


class KwokHarness:
    scheme = "kwok"
    faults = frozenset(
        {
            "stockout",
            "throttle",
            "server_error",
            "timeout",
            "lost_response",
            "partial_delete",
            "permission",
        }
    )
    max_attempts = MAX_ATTEMPTS

    def __init__(self, cluster: DevCluster) -> None:
        config = pykube.KubeConfig.from_file(str(cluster.kubeconfig))
        self.adapter = FaultyKubeAdapter(config)
        self.api = pykube.HTTPClient(config, http_adapter=self.adapter)
        self.admin = pykube.HTTPClient(config)
        self.pool = self._pool("kwok-contract")
        self.made: list[str] = []
        self._last: KwokProvider | None = None

    @staticmethod
    def _pool(name: str) -> PoolModel:
        return PoolModel.model_validate(
            {
                "name": name,
                "provider": "kwok",
                "instanceType": "kwok-8xa100",
                "gpuType": "a100",
                "gpusPerNode": 8,
                "minNodes": 0,
                "maxNodes": 6,
                "pricePerHour": 32.77,
                "provisioningDelaySeconds": 0,
                "labels": {"team": "research"},
                "taints": ["nvidia.com/gpu=present:NoSchedule"],
            }
        )

    def group(self, *, target: int = 0, retrier: Retrier | None = None) -> NodePoolProvider:
        name = f"kwok-c-{uuid.uuid4().hex[:6]}"
        self.made.append(name)
        pool = self.pool.model_copy(update={"name": name})
        if target:
            build_provider(pool, api=self.admin).set_target_size(target)
        provider = build_provider(
            pool,
            api=self.api,
            retrier=retrier
            or Retrier(
                RetryPolicy(max_attempts=MAX_ATTEMPTS), sleep=no_sleep, rng=random.Random(1)
            ),
        )
        assert isinstance(provider, KwokProvider)
        self._last = provider
        return provider

    def missing_group(self) -> NodePoolProvider:
        raise NotApplicable("a kwok pool exists as soon as it is named: there is no group to miss")

    def inject(self, fault: Fault, target: Target, *, times: int = 1) -> None:
        if fault == "stockout":
            assert self._last is not None
            self._last.available_nodes = len(self.truth(self._last)[1])
            return
        if fault == "partial_delete":
            # Nodes are deleted one call each: some of those calls fail.
            self.adapter.scripted += [
                ["lost_response", "delete", times],
                ["server_error", "delete", times],
            ]
            return
        self.adapter.scripted.append([fault, target, times])

    def stats(self, provider: NodePoolProvider) -> RetryStats:
        assert isinstance(provider, KwokProvider)
        return provider.retrier.stats

    def settle(self, provider: NodePoolProvider) -> None:
        def no_node_leaving() -> bool:
            return not any(
                n.obj["metadata"].get("deletionTimestamp")
                for n in pykube.Node.objects(self.admin).filter(
                    selector={POOL_LABEL: provider.group_id}
                )
            )

        wait_until(no_node_leaving, 30, "deleted kwok nodes to go")

    def truth(self, provider: NodePoolProvider) -> tuple[int, list[str]]:
        nodes = [
            n.obj
            for n in pykube.Node.objects(self.admin).filter(
                selector={POOL_LABEL: provider.group_id}
            )
            if not n.obj["metadata"].get("deletionTimestamp")
        ]
        return len(nodes), sorted(n["spec"]["providerID"] for n in nodes)

    def cleanup(self) -> None:
        for name in self.made:
            for node in pykube.Node.objects(self.admin).filter(selector={POOL_LABEL: name}):
                node.delete()


@pytest.fixture
def kwok_harness(kube_cluster: DevCluster) -> Any:
    harness = KwokHarness(kube_cluster)
    yield harness
    harness.adapter.scripted.clear()
    harness.cleanup()


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_kwok_provider_meets_contract(kwok_harness: KwokHarness, check: str) -> None:
    try:
        CHECKS[check](kwok_harness)
    except NotApplicable as why:
        pytest.skip(f"{check}: {why}")


def test_kwok_nodes_become_ready_with_gpus_labels_taints_and_provider_id(
    kwok_harness: KwokHarness, kube_cluster: DevCluster
) -> None:
    p = kwok_harness.group()
    p.set_target_size(1)
    (instance,) = p.describe().instances
    node = kube_cluster.get_json("node", instance.name)
    assert node["spec"]["providerID"] == f"kwok://{p.group_id}/{instance.name}"
    assert node["metadata"]["labels"]["team"] == "research"
    assert node["metadata"]["labels"]["dlscaler.io/gpu-type"] == "a100"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"][
        "taints"
    ]

    def ready() -> bool:
        return p.describe().instances[0].state is InstanceState.RUNNING

    wait_until(ready, 30, "the kwok node to become Ready")
    node = kube_cluster.get_json("node", instance.name)
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"


@pytest.mark.slow
def test_kwok_random_operations_under_faults_end_at_requested_sizes(
    kwok_harness: KwokHarness,
) -> None:
    retrier = Retrier(RetryPolicy(max_attempts=8), sleep=no_sleep, rng=random.Random(3))
    provider = kwok_harness.group(target=2, retrier=retrier)
    kwok_harness.adapter.rates = FaultRates(throttle=0.20, server_error=0.025, lost_response=0.025)
    kwok_harness.adapter.rng = random.Random("kwok-soak")
    rng = random.Random("kwok-ops")
    seen: set[str] = set(kwok_harness.truth(provider)[1])
    requests_before = sum(kwok_harness.adapter.requests.values())
    for step in range(200):
        before_target, before = kwok_harness.truth(provider)
        if rng.random() < 0.55 or not before:
            size = rng.randint(0, 6)
            provider.set_target_size(size)
            kwok_harness.settle(provider)
            target, after = kwok_harness.truth(provider)
            assert target == size, (step, size, after)
            if size >= before_target:
                assert set(before) <= set(after), step
            else:
                assert set(after) <= set(before), step
        else:
            doomed = rng.sample(before, k=rng.randint(1, min(3, len(before))))
            provider.delete_instances(doomed)
            kwok_harness.settle(provider)
            target, after = kwok_harness.truth(provider)
            assert after == sorted(set(before) - set(doomed)), (step, doomed)
        new = set(after) - set(before)
        assert not (new & seen), step
        seen |= new
    requests = sum(kwok_harness.adapter.requests.values()) - requests_before
    faults = sum(kwok_harness.adapter.faults.values())
    print(f"\nkwok: 200 ops, {requests} requests, {faults} faults, {retrier.stats.snapshot()}")
    assert retrier.stats.gave_up == 0
    assert faults > 0.15 * requests
    assert requests / 200 <= 15
