from __future__ import annotations

import numpy as np
import pytest

from predictors.backtest import backtest, pinball_loss, score
from predictors.base import BaseForecaster, Series
from predictors.registry import CANDIDATES


def test_pinball_loss_weighs_under_forecasts_by_q_and_over_by_one_minus_q():
    actual = np.array([10.0, 10.0])
    assert pinball_loss(actual, np.array([8.0, 8.0]), 0.9) == pytest.approx(1.8)
    assert pinball_loss(actual, np.array([12.0, 12.0]), 0.9) == pytest.approx(0.2)


def test_score_gives_mae_of_p50_and_coverage_of_p90():
    actual = np.array([[1.0, 2.0], [3.0, 4.0]])
    forecast = {0.5: np.array([[1.0, 1.0], [3.0, 3.0]]), 0.9: np.array([[1.0, 2.0], [2.0, 5.0]])}
    mae, pinball, coverage = score(actual, forecast)
    assert mae == pytest.approx(0.5)
    assert coverage == pytest.approx(0.75)
    assert pinball[0.9] == pytest.approx((0.9 * 1 + 0.1 * 1) / 4)  # one under, one over


class Spy(BaseForecaster):
    """Records how much history each fit saw, and what each forecast could see."""

    name = "spy"
    fitted_lengths: list[int] = []

    def _fit(self, series):
        Spy.fitted_lengths.append(len(series))

    def _predict_at(self, series, origins, h, quantiles):
        # A forecast that peeks would read series.values[o:]; this one reads only [:o].
        last = series.values[origins - 1][:, None]
        return {q: np.repeat(last, h, axis=1) for q in quantiles}


def test_every_fit_sees_only_history_before_its_first_origin(random_walk):
    series = random_walk(5)
    Spy.fitted_lengths = []
    result = backtest({"spy": lambda h, qs: Spy()}, series, 12, first_origin=288, refit_every=288)
    assert Spy.fitted_lengths == [288, 576, 864, 1152]
    assert result.origins[0] == 288 and result.origins[-1] == len(series) - 12
    # The spy is the last value: exactly the naive baseline.
    assert result.scores["spy"].mae == result.scores["naive"].mae


def test_ratios_are_against_the_best_point_baseline_and_naive_quantiles(daily_sine):
    series = daily_sine(4)
    result = backtest({}, series, 12, first_origin=2 * 288)
    # On a pure daily sine, seasonal naive is exact: it is the best point baseline.
    assert result.best_point_baseline() == "seasonal-naive-daily"
    assert result.scores["seasonal-naive-daily"].mae == pytest.approx(0.0, abs=1e-9)
    rel_mae, rel_pinball = result.relative("naive-quantiles")
    assert rel_pinball == 1.0
    assert rel_mae > 1.0  # naive quantiles' p50 is the last value: worse than exact
    table = result.table()
    assert set(table["naive"]) >= {
        "mae",
        "rel_mae",
        "pinball_p90",
        "rel_pinball_p90",
        "coverage_p90",
        "fit_s",
        "predict_s",
    }


def test_a_model_failing_to_fit_is_counted_and_forecast_with_the_last_value(random_walk):
    class Failing(BaseForecaster):
        name = "failing"

        def _fit(self, series):
            raise RuntimeError("no convergence")

        def _predict_at(self, series, origins, h, quantiles):
            raise AssertionError("never fitted")

    series = random_walk(3)
    result = backtest({"failing": lambda h, qs: Failing()}, series, 6, first_origin=288)
    scores = result.scores["failing"]
    assert scores.failures == 2 and scores.fits == 0
    assert "no convergence" in scores.notes[0]
    assert scores.mae == result.scores["naive"].mae


def test_first_origin_past_the_end_says_to_shorten_the_warmup():
    with pytest.raises(ValueError, match="shorter warm-up"):
        backtest(dict(CANDIDATES), Series(np.ones(20), 300.0), 12, first_origin=15)
