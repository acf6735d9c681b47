"""Pieces every provider harness of the contract suite shares, and the harness base class."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from dlscaler.config import PoolModel
from dlscaler.pool import (
    CapacityError,
    NodePoolProvider,
    PermissionDeniedError,
    ProviderError,
    QuotaError,
)
from providers.contract import ALL_FAULTS, Fault, Target
from providers.retry import Retrier, RetryPolicy, RetryStats, no_sleep

MAX_ATTEMPTS = 4

_counter = itertools.count(1)


def unique_name(prefix: str) -> str:
    """Group names unique across the session (the cloud fakes outlive one test)."""
    return f"{prefix}-{next(_counter):04d}"


def contract_pool(provider: str, **fields: Any) -> PoolModel:
    data: dict[str, Any] = {
        "name": "contract-a100",
        "provider": provider,
        "instanceType": "p4d.24xlarge",
        "gpuType": "a100",
        "gpusPerNode": 8,
        "minNodes": 0,
        "maxNodes": 6,
        "pricePerHour": 32.77,
        "labels": {"team": "research"},
        "taints": ["nvidia.com/gpu=present:NoSchedule"],
    }
    data.update(fields)
    return PoolModel.model_validate(data)


def test_retrier(seed: int = 1, max_attempts: int = MAX_ATTEMPTS) -> Retrier:
    """Backoff computed and counted, never slept: the suite stays fast and repeatable."""
    return Retrier(
        RetryPolicy(max_attempts=max_attempts, base_delay_s=0.5, max_delay_s=20.0),
        sleep=no_sleep,
        rng=random.Random(seed),
    )


test_retrier.__test__ = False  # type: ignore[attr-defined]


def stats_of(provider: NodePoolProvider) -> RetryStats:
    retrier = provider.retrier  # type: ignore[attr-defined]
    assert isinstance(retrier, Retrier)
    return retrier.stats


class ContractHarness:
    """A :class:`providers.contract.Harness` for a cloud served on loopback.

    ``cloud`` is the test session's cloud: its ``faults`` is the fault layer in front of it
    and its ``provider(pool, retrier=...)`` builds a provider with real SDK clients pointed
    at it. A backend names its group prefix and provider-id scheme, creates a group in its
    cloud (:meth:`create_group`) and lets asynchronous work finish (:meth:`settle`); a
    backend whose groups are made another way overrides :meth:`group` and
    :meth:`missing_group` too.
    """

    scheme: str
    group_prefix: str
    """Names of this backend's groups start with it (``asg``, ``mig``, ``vmss``...)."""
    faults: frozenset[str] = ALL_FAULTS
    max_attempts = MAX_ATTEMPTS
    pool: PoolModel
    cloud: Any

    def create_group(self, name: str, *, target: int) -> None:
        raise NotImplementedError

    def settle(self, provider: NodePoolProvider) -> None:
        raise NotImplementedError

    def provider_for(self, group_id: str, *, retrier: Retrier) -> NodePoolProvider:
        return self.cloud.provider(
            self.pool.model_copy(update={"group_id": group_id}), retrier=retrier
        )

    def group(self, *, target: int = 0, retrier: Retrier | None = None) -> NodePoolProvider:
        name = unique_name(self.group_prefix)
        self.create_group(name, target=target)
        return self.provider_for(name, retrier=retrier or test_retrier())

    def missing_group(self) -> NodePoolProvider:
        return self.provider_for(f"no-such-{self.group_prefix}", retrier=test_retrier())

    def inject(self, fault: Fault, target: Target, *, times: int = 1) -> None:
        self.cloud.faults.inject(fault, target, times=times)

    def stats(self, provider: NodePoolProvider) -> RetryStats:
        return stats_of(provider)


# --- steps of the per-cloud tests -------------------------------------------------------


def refused_permission(harness: ContractHarness, target: Target) -> str:
    """The permission named by the error when the cloud refuses the ``target`` call (read,
    scale or delete) on a group of one node."""
    p = harness.group(target=1)
    pid = p.describe().instances[0].provider_id
    harness.inject("permission", target)
    with pytest.raises(PermissionDeniedError) as err:
        if target == "read":
            p.describe()
        elif target == "scale":
            p.set_target_size(2)
        else:
            p.delete_instances([pid])
    return err.value.permission


def failed_scale_up(
    harness: ContractHarness, fault: Fault, *, start: int, to: int
) -> tuple[NodePoolProvider, ProviderError]:
    """A group of ``start`` nodes asked for ``to`` while a ``stockout`` or ``quota`` hits
    the scale call: the provider, and the CapacityError or QuotaError it raised."""
    p = harness.group(target=start)
    harness.inject(fault, "scale")
    expected = {"stockout": CapacityError, "quota": QuotaError}[fault]
    with pytest.raises(expected) as err:
        p.set_target_size(to)
    return p, err.value
