from __future__ import annotations

import numpy as np

from predictors.base import DAY_S, Series
from predictors.regression import QuantileRegression

QS = [0.1, 0.5, 0.9]


def test_pure_daily_sine_is_forecast_within_a_tight_error(daily_sine):
    series = daily_sine(10)
    train = series.head(9 * 288)
    forecast = QuantileRegression(horizon=12).fit(train).predict(12, QS)
    actual = series.values[9 * 288 : 9 * 288 + 12]
    assert np.max(np.abs(forecast[0.5] - actual)) < 0.3  # amplitude 10, an hour moves it ~2.6


def test_constant_series_gives_constant_quantiles(constant):
    forecast = QuantileRegression(horizon=12).fit(constant(3, 7.0)).predict(12, QS)
    for q in QS:
        np.testing.assert_allclose(forecast[q], np.full(12, 7.0), atol=1e-6)


def test_band_is_wider_where_demand_has_been_jumpy():
    # Calm and jumpy days alternate; the spread model should tell them apart.
    rng = np.random.default_rng(0)
    day = int(DAY_S / 300)
    chunks = []
    for d in range(16):
        scale = 3 if d % 2 else 0.3
        chunks.append(rng.normal(0, scale, day))
    values = np.maximum(50 + np.concatenate(chunks), 0)
    series = Series(values, 300.0)
    model = QuantileRegression(horizon=6, spread_window_s=14 * DAY_S).fit(series)
    calm_end = 15 * day  # end of a calm day (day 14)
    jumpy_end = 16 * day  # end of a jumpy day (day 15)
    at = model.predict_at(series, [calm_end, jumpy_end], 6, QS)
    width = at[0.9] - at[0.1]
    assert width[1].mean() > 3 * width[0].mean()


def test_interpolates_quantiles_it_was_not_fitted_for(random_walk):
    model = QuantileRegression(horizon=4).fit(random_walk(5))
    forecast = model.predict(4, [0.1, 0.5, 0.7, 0.9])
    assert np.all(forecast[0.5] <= forecast[0.7]) and np.all(forecast[0.7] <= forecast[0.9])


def test_steps_past_the_fitted_horizon_repeat_the_last_fitted_step(random_walk):
    model = QuantileRegression(horizon=4).fit(random_walk(5))
    longer = model.predict(8, QS)
    fitted = model.predict(4, QS)
    for q in QS:
        np.testing.assert_allclose(longer[q][:4], fitted[q])
        np.testing.assert_allclose(longer[q][4:], fitted[q][3])
