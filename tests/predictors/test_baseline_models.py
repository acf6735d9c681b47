from __future__ import annotations

import numpy as np

from predictors.base import WEEK_S, Series
from predictors.baselines import Naive, NaiveQuantiles, SeasonalNaive

QS = [0.1, 0.5, 0.9]


def test_naive_repeats_the_last_value_for_every_quantile():
    forecast = Naive().fit(Series(np.array([3.0, 5.0, 4.0]), 60.0)).predict(4, QS)
    for q in QS:
        np.testing.assert_array_equal(forecast[q], [4.0] * 4)


def test_seasonal_naive_forecasts_a_pure_daily_sine_exactly(daily_sine):
    series = daily_sine(3)
    model = SeasonalNaive().fit(series.head(2 * 288))
    forecast = model.predict(288, QS)
    np.testing.assert_allclose(forecast[0.5], series.values[2 * 288 :], atol=1e-9)


def test_seasonal_naive_repeats_the_season_beyond_one_period():
    values = np.tile([1.0, 2.0, 3.0, 4.0], 3)
    series = Series(values, 21_600.0)  # four steps a day
    forecast = SeasonalNaive().fit(series).predict(6, QS)
    np.testing.assert_array_equal(forecast[0.5], [1, 2, 3, 4, 1, 2])


def test_seasonal_naive_shorter_than_a_season_uses_the_last_value():
    series = Series(np.array([1.0, 2.0, 9.0]), 300.0)
    forecast = SeasonalNaive(WEEK_S).fit(series).predict(3, QS)
    np.testing.assert_array_equal(forecast[0.9], [9.0, 9.0, 9.0])


def test_naive_quantiles_of_a_constant_series_are_that_constant(constant):
    forecast = NaiveQuantiles().fit(constant(2, 7.0)).predict(12, QS)
    for q in QS:
        np.testing.assert_array_equal(forecast[q], np.full(12, 7.0))


def test_naive_quantiles_add_the_quantiles_of_past_k_step_changes():
    # Changes of +1 per step: the k-step change is always k.
    series = Series(np.arange(100, dtype=float), 300.0)
    forecast = NaiveQuantiles().fit(series).predict(3, QS)
    np.testing.assert_allclose(forecast[0.5], [100, 101, 102])
    np.testing.assert_allclose(forecast[0.9], [100, 101, 102])


def test_naive_quantiles_spread_matches_a_known_change_distribution(random_walk):
    series = random_walk(30, seed=3)
    forecast = NaiveQuantiles().fit(series).predict(1, QS)
    last = series.values[-1]
    # One-step changes are -1 (20%), 0 (60%), +1 (20%): p10 = -1, p50 = 0, p90 = +1.
    assert forecast[0.1][0] == last - 1
    assert forecast[0.5][0] == last
    assert forecast[0.9][0] == last + 1
