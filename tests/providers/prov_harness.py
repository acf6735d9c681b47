"""Pieces every provider harness of the contract suite shares."""

from __future__ import annotations

import itertools
import random
from typing import Any

from dlscaler.config import PoolModel
from dlscaler.pool import NodePoolProvider
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
