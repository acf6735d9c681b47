"""Every model, the chooser included, keeps the same contract (one suite, all models)."""

from __future__ import annotations

import numpy as np
import pytest

from dlscaler.model import Gang
from predictors.base import NotFittedError, Series
from predictors.registry import make_model, model_names
from predictors.series import demand_series

H = 12
QS = (0.1, 0.5, 0.9)


@pytest.fixture
def random_gangs() -> Series:
    """9 days of demand of gangs with random arrivals, sizes and run times, with the
    running-age and arrival covariates (the structural model needs them)."""
    rng = np.random.default_rng(0)
    submits = np.cumsum(rng.exponential(400.0, size=2_000))
    gangs = [
        Gang(f"g{i}", float(t), 1, int(rng.choice([1, 2, 4, 8])), duration_s=float(d))
        for i, (t, d) in enumerate(zip(submits, rng.lognormal(7.5, 1.5, size=2_000), strict=True))
    ]
    return demand_series(gangs, 300.0, start_s=0.0, end_s=9 * 86_400.0)


@pytest.mark.parametrize("name", model_names())
def test_predict_gives_h_monotone_non_negative_steps_per_quantile(name, random_gangs):
    series = random_gangs
    model = make_model(name, H, QS).fit(series)
    forecast = model.predict(H, QS)
    assert sorted(forecast) == list(QS)
    for values in forecast.values():
        assert values.shape == (H,)
        assert np.all(np.isfinite(values)) and np.all(values >= 0)
    assert np.all(forecast[0.1] <= forecast[0.5]) and np.all(forecast[0.5] <= forecast[0.9])


@pytest.mark.parametrize("name", model_names())
def test_predict_at_matches_predict_at_the_end_and_has_one_row_per_origin(name, random_gangs):
    series = random_gangs
    model = make_model(name, H, QS).fit(series)
    at = model.predict_at(series, [len(series) - 5, len(series)], H, QS)
    end = model.predict(H, QS)
    for q in QS:
        assert at[q].shape == (2, H)
        np.testing.assert_allclose(at[q][1], end[q])


@pytest.mark.parametrize("name", [n for n in model_names() if n != "auto"])
def test_predict_before_fit_says_to_fit_first(name):
    with pytest.raises(NotFittedError, match="fit"):
        make_model(name, H, QS).predict(H, QS)


@pytest.mark.parametrize("name", [n for n in model_names() if n != "auto"])
def test_nan_in_history_is_rejected_with_the_index(name, random_walk):
    values = random_walk(9).values.copy()
    values[100] = np.nan
    from predictors.base import Series

    with pytest.raises(ValueError, match="index 100"):
        make_model(name, H, QS).fit(Series(values, 300.0))


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(ValueError, match="choose from naive"):
        make_model("prophet", H, QS)


def test_crossing_quantiles_are_repaired_around_an_unmoved_median():
    from predictors.base import tidy_quantiles

    raw = {
        0.9: np.array([2.0, 9.0]),
        0.1: np.array([5.0, -1.0]),
        0.5: np.array([3.0, 2.0]),
    }
    tidy = tidy_quantiles(raw)
    assert list(tidy) == [0.1, 0.5, 0.9]
    np.testing.assert_array_equal(tidy[0.5], [3.0, 2.0])
    np.testing.assert_array_equal(tidy[0.1], [3.0, 0.0])
    np.testing.assert_array_equal(tidy[0.9], [3.0, 9.0])
