"""The baselines every other model is scored against; first-class models themselves.

- ``naive``: the last value, for every step and every quantile. GPU demand is dominated by
  jobs already running, so this is hard to beat (on the bundled trace it beats seasonal
  naive 3-4x at one hour).
- ``seasonal-naive-daily`` / ``-weekly``: the value one season earlier. Also the chooser's
  fallback: it fits on any non-empty history (shorter than a season, it is the last value).
- ``naive-quantiles``: the last value plus the empirical quantiles of the ``k``-step changes
  seen over a recent window, for each step ``k``; the baseline for quantile (pinball) loss.
"""

from __future__ import annotations

import numpy as np

from predictors.base import (
    DAY_S,
    WEEK_S,
    BaseForecaster,
    FloatArray,
    IntArray,
    Quantiles,
    Series,
    cutoff_windows,
)


class Naive(BaseForecaster):
    name = "naive"

    def _fit(self, series: Series) -> None:
        del series

    def _predict_at(
        self, series: Series, origins: IntArray, h: int, quantiles: list[float]
    ) -> Quantiles:
        last = series.values[origins - 1]
        point = np.repeat(last[:, None], h, axis=1)
        return {q: point for q in quantiles}


class SeasonalNaive(BaseForecaster):
    """``y[t + k] = y[t + k - m]`` for a season of ``m`` steps (repeated past one season)."""

    def __init__(self, season_s: float = DAY_S, name: str | None = None) -> None:
        super().__init__()
        if not season_s > 0:
            raise ValueError(f"season_s must be > 0, got {season_s}")
        self.season_s = season_s
        self.name = name or (
            "seasonal-naive-weekly" if season_s == WEEK_S else "seasonal-naive-daily"
        )

    def _fit(self, series: Series) -> None:
        del series

    def _predict_at(
        self, series: Series, origins: IntArray, h: int, quantiles: list[float]
    ) -> Quantiles:
        m = series.steps(self.season_s)
        steps = np.arange(h)
        # Step o+k (k from 0) reads o - m + (k mod m): the same phase one season back.
        point = cutoff_windows(series.values, origins, steps % m - m)
        # Less than a season observed: there is no "one season ago"; use the last value.
        short = origins < m
        if short.any():
            point[short] = series.values[origins[short] - 1][:, None]
        return {q: point for q in quantiles}


class NaiveQuantiles(BaseForecaster):
    """Last value + empirical quantiles of past ``k``-step changes over ``window_s``.

    The window is recent on purpose: on the bundled trace a 7-day window gives a p90
    pinball loss ~15% lower than a 30-day one (the spread of changes drifts), so this is a
    strong baseline, not a straw man.
    """

    name = "naive-quantiles"
    min_points = 2

    def __init__(self, window_s: float = 7 * DAY_S) -> None:
        super().__init__()
        self.window_s = window_s
        self._window: FloatArray = np.zeros(0)

    def _fit(self, series: Series) -> None:
        self._window = series.values[-series.steps(self.window_s) :].copy()

    def _predict_at(
        self, series: Series, origins: IntArray, h: int, quantiles: list[float]
    ) -> Quantiles:
        offsets = self._change_quantiles(h, quantiles)
        last = series.values[origins - 1][:, None]
        return {q: last + offsets[i][None, :] for i, q in enumerate(quantiles)}

    def _change_quantiles(self, h: int, quantiles: list[float]) -> FloatArray:
        """(quantile, k) -> quantile of ``y[t+k] - y[t]`` in the window; when the window is
        shorter than ``k``, the longest change it has stands in."""
        window = self._window
        out = np.zeros((len(quantiles), h))
        for k in range(1, h + 1):
            lag = min(k, len(window) - 1)
            changes = window[lag:] - window[:-lag]
            out[:, k - 1] = np.quantile(changes, quantiles)
        return out
