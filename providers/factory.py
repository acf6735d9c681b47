"""``build_provider``: a pool-file entry in, the right adapter out.

Cloud SDKs are imported only when a pool of that cloud is built, so a controller that
manages only GCP pools never imports boto3. Tests and tools pass ready-made SDK clients
(pointed at loopback fakes) and retry settings as keyword overrides; an override the chosen
adapter does not take is an error, not silently ignored.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from dlscaler.config import PoolModel
from dlscaler.pool import NodePoolProvider
from providers.retry import Retrier, RetryPolicy

ADAPTER_OVERRIDES: dict[str, tuple[str, ...]] = {
    "fake": ("cloud",),
    "aws": ("session", "autoscaling", "ec2", "eks"),
    "gcp": ("credentials", "instance_group_managers", "operations"),
    "azure": ("credential", "compute", "poll_interval_s"),
    "kwok": ("api", "kubeconfig"),
}
"""Client overrides each adapter accepts, besides the retry ones
(``retrier``, or ``retry_policy``/``sleep``/``rng``)."""


def build_retrier(overrides: dict[str, Any]) -> Retrier:
    """Pop the retry overrides: a ready ``retrier``, or the pieces of one."""
    retrier = overrides.pop("retrier", None)
    policy: RetryPolicy | None = overrides.pop("retry_policy", None)
    sleep: Callable[[float], None] | None = overrides.pop("sleep", None)
    rng: random.Random | None = overrides.pop("rng", None)
    if retrier is not None:
        if policy or sleep or rng:
            raise TypeError("pass either retrier or retry_policy/sleep/rng, not both")
        if not isinstance(retrier, Retrier):
            raise TypeError(f"retrier must be a providers.retry.Retrier, got {type(retrier)}")
        return retrier
    if sleep is None:
        return Retrier(policy, rng=rng)
    return Retrier(policy, sleep=sleep, rng=rng)


def build_provider(pool: PoolModel, **client_overrides: Any) -> NodePoolProvider:
    """The adapter for ``pool.provider``, configured from the pool (validated: errors are
    :class:`~dlscaler.pool.InvalidConfigError` naming the field)."""
    overrides = dict(client_overrides)
    retrier = build_retrier(overrides)
    allowed = ADAPTER_OVERRIDES[pool.provider]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise TypeError(
            f"provider {pool.provider!r} does not take {', '.join(unknown)}; "
            f"it takes {', '.join(allowed)} and the retry overrides"
        )
    if pool.provider == "fake":
        from providers.fake import from_pool as fake_pool

        return fake_pool(pool, retrier=retrier, **overrides)
    if pool.provider == "aws":
        from providers.aws import from_pool as aws_pool

        return aws_pool(pool, retrier=retrier, **overrides)
    if pool.provider == "gcp":
        from providers.gcp import from_pool as gcp_pool

        return gcp_pool(pool, retrier=retrier, **overrides)
    if pool.provider == "azure":
        from providers.azure import from_pool as azure_pool

        return azure_pool(pool, retrier=retrier, **overrides)
    from providers.kwok import from_pool as kwok_pool

    return kwok_pool(pool, retrier=retrier, **overrides)
