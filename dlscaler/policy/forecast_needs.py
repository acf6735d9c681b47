"""What the ``predictive`` policy asks of a forecaster, in one place for the simulator, the
controller and the policy itself: which quantiles of demand, how far ahead, and how long
the arrival windows are. Pure functions of the policy config and the pools.

One lead time, for everything the policy looks ahead for: ``leadTimeFactor`` times the
longest provisioning delay of *all* the pools (300 s with no pool), typed pools included.
The policy grows for the forecast's quantile of demand within it, consolidation counts a
replacement's boot with it, and the arrival windows are that long (at least a minute).
All the pools, because room for arrivals is kept in every pool an arriving gang may run
in, a typed one included: its window must cover the slowest boot such a gang may wait for,
and the demand the forecast covers is every gang's, whatever its type. One number, so that
"within the lead time" names the same interval for the demand and for the arrivals kept
room for on top of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from dlscaler.config import PolicyConfig

MIN_WINDOW_S = 60.0
"""Arrival windows are at least a minute long (a lead time of 0 would sample nothing)."""

NO_POOL_DELAY_S = 300.0
"""The provisioning delay assumed when there is no pool (the default pool's)."""


class _Booting(Protocol):
    """A pool as the lead time sees it: a ``PoolModel`` (the config) or a ``PoolSpec``."""

    @property
    def provisioning_delay_s(self) -> float: ...


def forecast_shape(config: PolicyConfig) -> tuple[tuple[float, ...], float]:
    """The demand quantiles the policy reads, and the horizon: far enough ahead for the
    lead time and the scale-down window."""
    p = config.predictive
    quantiles = tuple(sorted({0.1, 0.5, 0.9, p.quantile, p.scale_down_quantile}))
    horizon_s = max(3_600.0, config.idle_timeout_s, 900.0 * p.lead_time_factor)
    return quantiles, horizon_s


def lead_time_s(config: PolicyConfig, pools: Sequence[_Booting]) -> float:
    """The provisioning lead time: the longest delay of all ``pools`` (300 s with no pool)
    times ``leadTimeFactor``."""
    delay = max((p.provisioning_delay_s for p in pools), default=NO_POOL_DELAY_S)
    return config.predictive.lead_time_factor * delay


def arrival_window_s(lead_s: float) -> float:
    """The length of the arrival windows for a lead time."""
    return max(lead_s, MIN_WINDOW_S)
