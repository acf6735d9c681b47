from __future__ import annotations

import warnings

import numpy as np

from predictors.base import Series
from predictors.ets import HoltWinters


def test_recursion_reproduces_statsmodels_fitted_values(random_walk):
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    series = random_walk(7, seed=1)
    model = HoltWinters().fit(series)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = ExponentialSmoothing(
            series.values,
            trend="add",
            damped_trend=True,
            seasonal="add",
            seasonal_periods=288,
            initialization_method="heuristic",
        ).fit(use_brute=False)
    # One-step forecasts from every origin are the fitted values of the next point.
    origins = np.arange(1, len(series))
    ours = model.predict_at(series, origins, 1, [0.5])
    errors = model._errors[:, 0]
    median = np.quantile(errors[np.isfinite(errors)], 0.5)
    np.testing.assert_allclose(ours[0.5][:, 0] - median, reference.fittedvalues[1:], atol=1e-6)


def test_pure_daily_sine_is_forecast_within_a_tight_error(daily_sine):
    series = daily_sine(8)
    train = series.head(7 * 288)
    forecast = HoltWinters(horizon=36).fit(train).predict(36, [0.1, 0.5, 0.9])
    actual = series.values[7 * 288 : 7 * 288 + 36]
    assert np.max(np.abs(forecast[0.5] - actual)) < 0.1  # amplitude 10


def test_too_short_for_two_seasons_says_how_many_points_it_needs():
    series = Series(np.ones(300), 300.0)
    try:
        HoltWinters().fit(series)
    except ValueError as err:
        assert "578 points" in str(err)
    else:
        raise AssertionError("fitting one season should fail")
