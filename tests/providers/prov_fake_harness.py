"""Contract harness for the in-memory fake cloud."""

from __future__ import annotations

from prov_harness import MAX_ATTEMPTS, contract_pool, stats_of, test_retrier, unique_name

from dlscaler.config import PoolModel
from dlscaler.pool import NodePoolProvider, PermissionDeniedError, QuotaError
from providers import build_provider
from providers.contract import Fault, Target
from providers.fake import FakeCloud
from providers.retry import Retrier, RetryStats

_OPERATIONS = {"read": "describe", "scale": "set_target", "delete": "delete", "any": "*"}


class FakeHarness:
    scheme = "fake"
    faults = frozenset(
        {
            "stockout",
            "quota",
            "throttle",
            "server_error",
            "timeout",
            "lost_response",
            "partial_delete",
            "permission",
        }
    )
    max_attempts = MAX_ATTEMPTS

    def __init__(self) -> None:
        self.pool: PoolModel = contract_pool("fake", instanceType="fake-8xa100")
        self.cloud = FakeCloud(seed=7)

    def group(self, *, target: int = 0, retrier: Retrier | None = None) -> NodePoolProvider:
        name = unique_name("fake")
        provider = build_provider(
            self.pool.model_copy(update={"group_id": name}),
            cloud=self.cloud,
            retrier=retrier or test_retrier(),
        )
        if target:
            self.cloud.set_target(name, target)
        return provider

    def missing_group(self) -> NodePoolProvider:
        from providers.fake import FakeProvider

        return FakeProvider(self.cloud, "no-such-group", pool="contract", retrier=test_retrier())

    def inject(self, fault: Fault, target: Target, *, times: int = 1) -> None:
        operation = _OPERATIONS[target]
        if fault == "quota":
            self.cloud.fail_next(operation, QuotaError("instance quota exhausted"), times=times)
        elif fault == "permission":
            self.cloud.fail_next(
                operation,
                PermissionDeniedError("caller may not read groups", permission="fake.groups.get"),
                times=times,
            )
        else:
            self.cloud.inject(fault, operation, times=times)

    def stats(self, provider: NodePoolProvider) -> RetryStats:
        return stats_of(provider)

    def settle(self, provider: NodePoolProvider) -> None:
        self.cloud.boot()


def fake_truth(harness: FakeHarness, provider: NodePoolProvider) -> tuple[int, list[str]]:
    snap = harness.cloud.snapshot(provider.group_id)
    return snap.target_size, sorted(i.provider_id for i in snap.instances)
