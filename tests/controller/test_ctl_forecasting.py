"""The forecasting seam: the persisted history goes to the predictors' automatic chooser;
other policies, and too little history, get no forecast (predictive then acts reactively)."""

from __future__ import annotations

import math

from controller.forecasting import Forecasting
from controller.state import DemandHistory
from dlscaler.config import PolicyConfig

T0 = 1_700_000_000.0


def daily_history(days: float = 2.0, step_s: float = 300.0) -> DemandHistory:
    h = DemandHistory(step_s=step_s, max_points=100_000)
    for i in range(int(days * 86_400 / step_s)):
        t = T0 + i * step_s
        h.observe(t, 64 + 48 * math.sin(2 * math.pi * (t % 86_400) / 86_400))
    return h


def test_the_predictive_policy_gets_quantiles_from_the_automatic_forecaster():
    f = Forecasting(PolicyConfig(policy="predictive"), background=False)
    h = daily_history()
    now = h.end_s
    assert f.forecast(now).quantiles == {}
    f.update(h, now)
    fc = f.forecast(now)
    assert {0.5, 0.9} <= set(fc.quantiles)
    assert fc.step_s == 300.0
    assert fc.start_s >= T0
    assert all(v >= 0 for v in fc.quantiles[0.9])
    assert fc.horizon_s() >= 3_600.0


def test_a_refresh_is_not_repeated_before_its_interval():
    clock = [0.0]
    f = Forecasting(PolicyConfig(policy="predictive"), background=False, every_s=60,
                    clock=lambda: clock[0])  # fmt: skip
    h = daily_history(0.5)
    f.update(h, h.end_s)
    first = f.forecast(h.end_s)
    h.observe(h.end_s + 1, 500.0)
    clock[0] = 30.0
    f.update(h, h.end_s)
    assert f.forecast(h.end_s) is first
    clock[0] = 61.0
    f.update(h, h.end_s)
    assert f.forecast(h.end_s) is not first


def test_other_policies_and_short_histories_get_no_forecast():
    reactive = Forecasting(PolicyConfig(policy="reactive"), background=False)
    h = daily_history(0.5)
    reactive.update(h, h.end_s)
    assert reactive.forecast(h.end_s).quantiles == {}
    predictive = Forecasting(PolicyConfig(policy="predictive"), background=False)
    short = DemandHistory(step_s=60)
    short.observe(T0, 8)
    predictive.update(short, T0 + 60)
    assert predictive.forecast(T0 + 60).quantiles == {}


class Broken:
    def forecast(self, *args, **kwargs):
        raise RuntimeError("model exploded")


def test_a_failing_forecaster_leaves_the_loop_without_a_forecast_instead_of_failing():
    f = Forecasting(PolicyConfig(policy="predictive"), Broken(), background=False)
    h = daily_history(0.5)
    f.update(h, h.end_s)
    assert f.forecast(h.end_s).quantiles == {}
