"""Contract harness for the in-memory fake cloud."""

from __future__ import annotations

from prov_harness import ContractHarness, contract_pool, test_retrier, unique_name

from dlscaler.config import PoolModel
from dlscaler.pool import NodePoolProvider, PermissionDeniedError, QuotaError
from providers import build_provider
from providers.contract import Fault, Target
from providers.fake import FakeCloud, FakeProvider
from providers.retry import Retrier

_OPERATIONS = {"read": "describe", "scale": "set_target", "delete": "delete", "any": "*"}


class FakeHarness(ContractHarness):
    scheme = "fake"
    group_prefix = "fake"

    def __init__(self) -> None:
        self.pool: PoolModel = contract_pool("fake", instanceType="fake-8xa100")
        self.cloud = FakeCloud(seed=7)

    def provider_for(self, group_id: str, *, retrier: Retrier) -> NodePoolProvider:
        return build_provider(
            self.pool.model_copy(update={"group_id": group_id}), cloud=self.cloud, retrier=retrier
        )

    def group(self, *, target: int = 0, retrier: Retrier | None = None) -> NodePoolProvider:
        # Building a fake provider creates its group from the pool: size it afterwards.
        name = unique_name(self.group_prefix)
        provider = self.provider_for(name, retrier=retrier or test_retrier())
        if target:
            self.cloud.set_target(name, target)
        return provider

    def missing_group(self) -> NodePoolProvider:
        # Not through build_provider, which would create the group.
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

    def settle(self, provider: NodePoolProvider) -> None:
        self.cloud.boot()


def fake_truth(harness: FakeHarness, provider: NodePoolProvider) -> tuple[int, list[str]]:
    snap = harness.cloud.snapshot(provider.group_id)
    return snap.target_size, sorted(i.provider_id for i in snap.instances)
