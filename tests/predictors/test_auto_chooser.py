"""The chooser never raises into the policy: short data, NaNs, models that fail."""

from __future__ import annotations

import math

import numpy as np

from predictors.auto import FALLBACK, AutoForecaster
from predictors.base import BaseForecaster, Series
from predictors.baselines import Naive, NaiveQuantiles
from predictors.registry import CANDIDATES

QS = (0.1, 0.5, 0.9)


class Broken(BaseForecaster):
    """Raises in fit (or, with ``when="predict"``, in predict) like a model gone wrong."""

    name = "broken"

    def __init__(self, when: str = "fit") -> None:
        super().__init__()
        self.when = when

    def _fit(self, series):
        if self.when == "fit":
            raise RuntimeError("singular matrix")

    def _predict_at(self, series, origins, h, quantiles):
        raise RuntimeError("exploded in predict")


class CountingNaive(Naive):
    """The last value, counting its fits (to observe the refit schedule)."""

    fits = 0

    def _fit(self, series):
        CountingNaive.fits += 1


def test_too_little_data_falls_back_to_seasonal_naive_untrusted():
    auto = AutoForecaster(horizon_s=3600).fit(Series(np.array([4.0, 5.0, 6.0]), 300.0))
    forecast = auto.forecast()
    assert forecast.model == FALLBACK
    assert forecast.recent_error_ratio is None
    assert forecast.quantiles[0.9] == (6.0,) * 12
    assert "too short" in auto.selection.fallback_reason


def test_empty_history_gives_an_empty_forecast_not_an_exception():
    auto = AutoForecaster().fit(Series(np.zeros(0), 300.0))
    forecast = auto.forecast(now_s=1000.0)
    assert forecast.horizon_s() == 0
    assert forecast.recent_error_ratio is None


def test_nans_are_filled_and_a_model_is_still_chosen(random_walk):
    series = random_walk(9)
    values = series.values.copy()
    values[::7] = np.nan
    auto = AutoForecaster(horizon_s=3600).fit(Series(values, 300.0))
    forecast = auto.forecast()
    assert auto.selection.fallback_reason == ""
    assert forecast.recent_error_ratio is not None
    assert all(math.isfinite(v) for q in forecast.quantiles.values() for v in q)


def test_missing_last_points_are_forecast_from_the_last_good_value(random_walk):
    values = random_walk(9).values.copy()
    values[-2:] = [np.nan, np.inf]
    auto = AutoForecaster(horizon_s=3600, candidates={"naive": CANDIDATES["naive"]})
    forecast = auto.fit(Series(values, 300.0)).forecast()
    assert forecast.quantiles[0.5] == (values[-3],) * 12


def test_a_model_that_raises_in_fit_is_skipped_and_reported(random_walk):
    candidates = {
        "broken": lambda h, qs: Broken(),
        "naive-quantiles": CANDIDATES["naive-quantiles"],
    }
    auto = AutoForecaster(horizon_s=3600, candidates=candidates).fit(random_walk(9))
    assert auto.chosen == "naive-quantiles"
    assert "singular matrix" in auto.selection.failures["broken"]
    assert auto.forecast().recent_error_ratio is not None


def test_every_model_raising_falls_back_to_seasonal_naive(random_walk):
    candidates = {"broken": lambda h, qs: Broken()}
    auto = AutoForecaster(horizon_s=3600, candidates=candidates).fit(random_walk(9))
    forecast = auto.forecast()
    assert forecast.model == FALLBACK
    assert forecast.recent_error_ratio is None
    assert len(forecast.quantiles[0.9]) == 12


def test_a_model_that_raises_in_predict_is_answered_with_the_last_value(random_walk):
    series = random_walk(9)
    auto = AutoForecaster(horizon_s=3600, candidates={"naive": CANDIDATES["naive"]}).fit(series)
    auto._model.models["naive"] = Broken(when="predict").fit(series)
    forecast = auto.forecast()
    assert forecast.quantiles[0.5] == (series.values[-1],) * 12
    assert "exploded in predict" in auto.last_error


def test_forecast_is_monotone_non_negative_and_starts_where_data_ends(random_walk):
    series = random_walk(9)
    forecast = AutoForecaster(horizon_s=3600).fit(series).forecast()
    assert forecast.start_s == series.end_s
    assert forecast.step_s == 300.0
    lo, mid, hi = (np.array(forecast.quantiles[q]) for q in QS)
    assert np.all(lo >= 0) and np.all(lo <= mid) and np.all(mid <= hi)
    assert 0 < forecast.recent_error_ratio < 10


def test_data_that_ends_before_now_is_forecast_through_the_gap(random_walk):
    series = random_walk(9)
    auto = AutoForecaster(horizon_s=3600).fit(series)
    forecast = auto.forecast(now_s=series.end_s + 1000.0)
    assert forecast.start_s == series.end_s + 900.0  # three whole steps skipped
    assert len(forecast.quantiles[0.5]) == 12


def test_refits_on_the_schedule_and_forecasts_from_new_data_in_between(random_walk):
    series = random_walk(9)
    auto = AutoForecaster(
        horizon_s=3600,
        candidates={"counting": lambda h, qs: CountingNaive()},
        refit_every_s=6 * 3600,
    )
    CountingNaive.fits = 0
    auto.fit(series.head(len(series) - 100))
    after_first = CountingNaive.fits
    one_step_later = series.head(len(series) - 99)
    forecast = auto.forecast(series=one_step_later)
    assert CountingNaive.fits == after_first  # not due: no refit
    assert forecast.quantiles[0.5][0] == one_step_later.values[-1]  # but the new last value
    auto.forecast(series=series)  # 99 steps (8.25 h) later: due
    assert CountingNaive.fits > after_first


def test_keeps_the_preferred_option_while_it_is_within_the_margin(random_walk):
    candidates = {"naive-quantiles": CANDIDATES["naive-quantiles"], "naive": CANDIDATES["naive"]}
    prefer = {0.5: "naive-quantiles"}
    auto = AutoForecaster(horizon_s=3600, candidates=candidates, prefer=prefer, switch_margin=0.5)
    auto.fit(random_walk(9))
    # On a symmetric random walk both have the same p50 (the last value): the preferred stays.
    assert auto.selection.recipe[0.5] == ("naive-quantiles",)


def test_blend_members_are_fitted_models(random_walk):
    auto = AutoForecaster(horizon_s=3600).fit(random_walk(9))
    for members in auto.selection.recipe.values():
        for name in members:
            assert name in auto._model.models
    assert isinstance(auto._model.models.get("naive-quantiles", NaiveQuantiles()), NaiveQuantiles)


def test_a_longer_horizon_than_fitted_refits_for_it(random_walk):
    candidates = {m: CANDIDATES[m] for m in ("naive-quantiles", "regression")}
    auto = AutoForecaster(horizon_s=3600, candidates=candidates).fit(random_walk(9))
    forecast = auto.forecast(horizon_s=7200)
    assert len(forecast.quantiles[0.9]) == 24
    assert forecast.recent_error_ratio is not None
    regression = auto._model.models.get("regression")
    assert regression is None or regression.horizon == 24
