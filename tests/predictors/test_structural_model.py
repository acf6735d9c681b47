"""The structural forecaster: survivors of the running GPUs plus newcomers, from covariates."""

from __future__ import annotations

import numpy as np
import pytest

from dlscaler.model import Gang
from predictors.auto import AutoForecaster
from predictors.base import DAY_S, Series
from predictors.registry import CANDIDATES
from predictors.series import demand_series
from predictors.structural import StructuralForecaster
from predictors.survival import RunningState

STEP_S = 300.0
H = 12
QS = [0.1, 0.5, 0.9]


def gang(i: int, submit_s: float, gpus: int, duration_s: float | None) -> Gang:
    return Gang(f"g{i}", submit_s, workers=1, gpus_per_worker=gpus, duration_s=duration_s)


def random_gangs(days: float, seed: int = 0) -> list[Gang]:
    """Poisson arrivals (one every ~7 min), 1-8 GPUs, run times from a minute to days."""
    rng = np.random.default_rng(seed)
    count = int(days * DAY_S / 400.0)
    submits = np.cumsum(rng.exponential(400.0, size=count))
    durations = rng.lognormal(7.5, 1.5, size=count)
    return [
        gang(i, float(t), int(rng.choice([1, 2, 4, 8])), float(d))
        for i, (t, d) in enumerate(zip(submits, durations, strict=True))
        if t < days * DAY_S
    ]


def running_gpus(gangs: list[Gang], at_s: float, since_s: float) -> float:
    """GPUs of gangs running at ``since_s`` and still running at ``at_s`` (exactly)."""
    return float(
        sum(
            g.total_gpus
            for g in gangs
            if g.submit_s <= since_s and g.submit_s + (g.duration_s or np.inf) > at_s
        )
    )


def test_constant_arrivals_of_30_minute_jobs_are_forecast_exactly():
    # A 2-GPU gang arrives 100 s into every step and runs exactly 30 minutes: six are always
    # running (one ends as the next starts), so demand is 12 GPUs at every horizon.
    days = 10
    gangs = [gang(i, i * STEP_S + 100.0, 2, 1_800.0) for i in range(int(days * DAY_S / STEP_S))]
    series = demand_series(gangs, STEP_S, start_s=0.0, end_s=days * DAY_S)
    model = StructuralForecaster(horizon=H).fit(series.head(9 * 288))
    origins = np.array([8 * 288, 9 * 288 + 7, 9 * 288 + 100])
    forecast = model.predict_at(series, origins, H, QS)
    for q in QS:
        np.testing.assert_allclose(forecast[q], 12.0, atol=1e-6)


def test_survivors_are_exact_at_bucket_edges_and_for_a_lone_burst():
    gangs = random_gangs(3)
    series = demand_series(gangs, STEP_S, start_s=0.0, end_s=3 * DAY_S)
    state = RunningState.of(series, "test")
    origins = np.arange(300, 700, 37)
    # 5, 10, 20, 30 and 60 minutes are bucket edges: "still running" is "at least that old".
    for lag in (0, 1, 2, 4, 6, 12):
        exact = [running_gpus(gangs, (o + lag) * STEP_S, o * STEP_S) for o in origins]
        np.testing.assert_allclose(state.survivors(origins, lag), exact)

    # Between edges the straddling bucket is split by when its GPUs arrived, which is exact
    # when they all arrived together: 10 GPUs for 2 h, and 3 more 25 minutes later.
    burst = [gang(0, 1_000.0, 10, 7_200.0), gang(1, 2_500.0, 3, 7_200.0)]
    lone = demand_series(burst, STEP_S, start_s=0.0, end_s=DAY_S)
    state = RunningState.of(lone, "test")
    origins = np.array([5, 7, 9])  # cut-offs at 25, 35 and 45 minutes
    for lag in range(13):
        exact = [running_gpus(burst, (o + lag) * STEP_S, o * STEP_S) for o in origins]
        np.testing.assert_allclose(state.survivors(origins, lag), exact)


def test_forecasts_from_a_series_cut_at_the_origin_equal_those_from_the_whole_series():
    series = demand_series(random_gangs(10, seed=1), STEP_S, start_s=0.0, end_s=10 * DAY_S)
    model = StructuralForecaster(horizon=H).fit(series.head(8 * 288))
    for origin in (8 * 288, 8 * 288 + 77, 9 * 288 + 200, len(series)):
        whole = model.predict_at(series, [origin], H, QS)
        cut = model.predict_at(series.head(origin), [origin], H, QS)
        for q in QS:
            np.testing.assert_array_equal(whole[q], cut[q])
    # And the fit sees only what it was given: refitting on the same head is the same model.
    again = StructuralForecaster(horizon=H).fit(series.head(8 * 288))
    np.testing.assert_array_equal(again.survival, model.survival)


def test_a_series_without_covariates_is_refused_and_the_chooser_goes_on_without_it(
    random_walk,
):
    series = random_walk(9)
    with pytest.raises(ValueError, match=r"gpus_age_ge_\* .*arrived_gpus.*demand_series"):
        StructuralForecaster(horizon=H).fit(series)

    auto = AutoForecaster(horizon_s=H * STEP_S).fit(series)
    assert "arrived_gpus" in auto.selection.skipped["structural"]
    assert auto.selection.fallback_reason == ""
    assert "naive-quantiles+structural" not in auto.selection.losses[0.9]
    # Without the structural model the regression average is the p90's incumbent: scored
    # though not among the two best, and kept while within the (here huge) margin.
    assert "naive-quantiles+regression" in auto.selection.losses[0.9]
    patient = AutoForecaster(horizon_s=H * STEP_S, prefer_margin=10.0).fit(series)
    assert patient.selection.recipe[0.9] == ("naive-quantiles", "regression")


def test_without_covariates_the_chooser_does_as_before_the_structural_model(random_walk):
    # The controller and the simulator hand the chooser demand values only: every refit
    # must choose, score and forecast as when the structural model was not a candidate,
    # and count no failure (a model that cannot apply to the series is not one that broke).
    series = random_walk(9)
    auto = AutoForecaster(horizon_s=H * STEP_S).fit(series)
    before = AutoForecaster(
        horizon_s=H * STEP_S,
        candidates={name: f for name, f in CANDIDATES.items() if name != "structural"},
        prefer={0.9: "naive-quantiles+regression"},
    ).fit(series)
    assert auto.selection.failures == {}
    assert auto.selection.losses == before.selection.losses
    assert auto.selection.recipe == before.selection.recipe
    assert auto.forecast() == before.forecast()


def test_a_chooser_left_with_no_candidate_that_fits_the_series_says_why(random_walk):
    only = {"structural": CANDIDATES["structural"]}
    auto = AutoForecaster(horizon_s=H * STEP_S, candidates=only).fit(random_walk(9))
    assert auto.selection.failures == {}
    assert "structural" in auto.selection.fallback_reason
    assert "arrived_gpus" in auto.selection.fallback_reason
    assert auto.forecast().recent_error_ratio is None


def test_the_chooser_prefers_the_structural_average_for_the_p90_when_covariates_exist():
    series = demand_series(random_gangs(10, seed=2), STEP_S, start_s=0.0, end_s=10 * DAY_S)
    auto = AutoForecaster(horizon_s=H * STEP_S).fit(series)
    assert "structural" not in auto.selection.failures
    losses = auto.selection.losses[0.9]
    assert losses["naive-quantiles+structural"] <= 1.25 * min(losses.values())
    assert auto.selection.recipe[0.9] == ("naive-quantiles", "structural")


def test_constant_demand_gives_constant_quantiles():
    # Gangs that run past the end of the series: 20 GPUs at every step, ageing through the
    # buckets.
    gangs = [gang(0, 0.0, 8, None), gang(1, 0.0, 12, None)]
    series = demand_series(gangs, STEP_S, start_s=0.0, end_s=9 * DAY_S)
    assert np.all(series.values == 20.0)
    model = StructuralForecaster(horizon=H).fit(series)
    forecast = model.predict(H, QS)
    for q in QS:
        np.testing.assert_allclose(forecast[q], 20.0, atol=1e-9)


def test_young_gpus_are_forecast_to_leave_and_old_ones_to_stay():
    # On a history where short gangs (10 minutes) and long ones (days) both arrive, the
    # survival table learns that the youngest bucket empties within the hour and the
    # oldest does not.
    gangs = random_gangs(12, seed=3)
    long_runs = [gang(10_000 + i, i * 7_200.0, 4, 5 * DAY_S) for i in range(140)]
    series = demand_series(gangs + long_runs, STEP_S, start_s=0.0, end_s=12 * DAY_S)
    model = StructuralForecaster(horizon=H).fit(series)
    youngest, oldest = model.survival[H - 1, 0], model.survival[H - 1, -1]
    assert youngest < 0.5 < 0.9 < oldest
    assert np.all(np.diff(model.survival, axis=0) <= 1e-12)  # never more survive later


def test_forecasts_past_the_fitted_horizon_extend_it():
    series = demand_series(random_gangs(9, seed=4), STEP_S, start_s=0.0, end_s=9 * DAY_S)
    model = StructuralForecaster(horizon=6).fit(series)
    forecast = model.predict(H, QS)
    assert all(values.shape == (H,) for values in forecast.values())
    assert all(np.all(np.isfinite(values)) for values in forecast.values())
    # The steps it was fitted for are forecast as when asked for those alone.
    within = model.predict(6, QS)
    for q in QS:
        np.testing.assert_allclose(forecast[q][:6], within[q])


def test_too_short_a_history_names_the_points_needed():
    with pytest.raises(ValueError, match="at least 61 points"):
        StructuralForecaster(horizon=H).fit(Series(np.ones(30), STEP_S))
