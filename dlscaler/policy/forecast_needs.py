"""What the ``predictive`` policy asks of a forecaster, in one place for the simulator and
the controller: which quantiles of demand, how far ahead, and how long the arrival windows
are. Pure functions of the policy config and the pools."""

from __future__ import annotations

from collections.abc import Sequence

from dlscaler.config import PolicyConfig, PoolModel

MIN_WINDOW_S = 60.0
"""Arrival windows are at least a minute long (a lead time of 0 would sample nothing)."""


def forecast_shape(config: PolicyConfig) -> tuple[tuple[float, ...], float]:
    """The demand quantiles the policy reads, and the horizon: far enough ahead for the
    lead time and the scale-down window."""
    p = config.predictive
    quantiles = tuple(sorted({0.1, 0.5, 0.9, p.quantile, p.scale_down_quantile}))
    horizon_s = max(3_600.0, config.idle_timeout_s, 900.0 * p.lead_time_factor)
    return quantiles, horizon_s


def lead_time_s(config: PolicyConfig, pools: Sequence[PoolModel]) -> float:
    """The provisioning lead time: the longest pool delay (300 s with no pool) times
    ``leadTimeFactor``."""
    delay = max((p.provisioning_delay_s for p in pools), default=300.0)
    return config.predictive.lead_time_factor * delay


def arrival_window_s(lead_s: float) -> float:
    """The length of the arrival windows for a lead time."""
    return max(lead_s, MIN_WINDOW_S)
