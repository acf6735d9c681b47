"""Holt-Winters (additive damped trend, additive daily season) on raw demand levels.

statsmodels fits the smoothing parameters and initial states on a recent window; the
recursion itself is re-run here (the same equations as ``statsmodels.tsa.holtwinters``, which
the tests check) so forecasts from many later origins come from one pass, without refitting.
Quantiles are the empirical quantiles of the in-sample ``k``-step errors.

It is here because it is the textbook model and the chooser should get to try it, not
because it wins: on GPU demand a level model chases every job that starts or ends.
"""

from __future__ import annotations

import warnings

import numpy as np

from predictors.base import DAY_S, BaseForecaster, FloatArray, IntArray, Quantiles, Series


class HoltWinters(BaseForecaster):
    name = "ets"
    min_points = 3

    def __init__(self, window_s: float = 7 * DAY_S, season_s: float = DAY_S, horizon: int = 12):
        super().__init__()
        self.window_s = window_s
        self.season_s = season_s
        self.horizon = horizon
        self._params: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 1.0)
        self._initial: tuple[float, float, FloatArray] = (0.0, 0.0, np.zeros(1))
        self._window_start_s = 0.0
        self._errors: FloatArray = np.zeros((1, 1))

    def _fit(self, series: Series) -> None:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        m = series.steps(self.season_s)
        window = series.tail(series.steps(self.window_s))
        if len(window) < 2 * m + 2:
            raise ValueError(
                f"{self.name}: needs two seasons ({2 * m + 2} points) in its window, "
                f"got {len(window)}"
            )
        y = window.values
        with warnings.catch_warnings():
            # Convergence chatter on flat stretches; the fit is still usable.
            warnings.simplefilter("ignore")
            model = ExponentialSmoothing(
                y,
                trend="add",
                damped_trend=True,
                seasonal="add",
                seasonal_periods=m,
                initialization_method="heuristic",
            )
            # No brute-force start grid: 4x faster, same loss on demand series.
            result = model.fit(use_brute=False)
        p = result.params
        self._params = (
            float(p["smoothing_level"]),
            float(p["smoothing_trend"]),
            float(p["smoothing_seasonal"]),
            float(p["damping_trend"]),
        )
        self._initial = (
            float(p["initial_level"]),
            float(p["initial_trend"]),
            np.asarray(p["initial_seasons"], dtype=np.float64),
        )
        self._window_start_s = window.start_s
        # In-sample k-step errors from every origin after the first season.
        origins = np.arange(m, len(y) - 1)
        forecasts = self._forecast_from(y, origins, self.horizon, m)
        index = origins[:, None] + np.arange(self.horizon)[None, :]
        valid = index < len(y)
        errors = np.where(valid, y[np.minimum(index, len(y) - 1)] - forecasts, np.nan)
        self._errors = errors

    def _predict_at(
        self, series: Series, origins: IntArray, h: int, quantiles: list[float]
    ) -> Quantiles:
        m = series.steps(self.season_s)
        first = round((self._window_start_s - series.start_s) / series.step_s)
        if first < 0 or origins.min() <= first:
            raise ValueError(
                f"{self.name}: origins must come after the fitted window, which starts at "
                f"t={self._window_start_s:.0f}s"
            )
        y = series.values[first : int(origins.max())]
        point = self._forecast_from(y, origins - first, h, m)
        offsets = np.zeros((len(quantiles), h))
        for k in range(h):
            column = self._errors[:, min(k, self._errors.shape[1] - 1)]
            column = column[np.isfinite(column)]
            if column.size:
                offsets[:, k] = np.quantile(column, quantiles)
        return {q: point + offsets[i][None, :] for i, q in enumerate(quantiles)}

    def _forecast_from(self, y: FloatArray, origins: IntArray, h: int, m: int) -> FloatArray:
        """Forecasts for ``h`` steps after observing ``y[:o]``, for each origin ``o``."""
        level, trend, season = self._states(y, m)
        _, _, _, phi = self._params
        k = np.arange(1, h + 1)
        damp = phi * (1 - phi**k) / (1 - phi) if phi < 1 else k.astype(np.float64)
        last = origins - 1
        # Season index for step o-1+k is (o-1+k) - m * ceil(k/m) in the season array.
        season_index = last[:, None] + k[None, :] - m * np.ceil(k / m).astype(np.int64)[None, :]
        forecast = (
            level[last][:, None]
            + damp[None, :] * trend[last][:, None]
            + season[np.clip(season_index + m, 0, len(season) - 1)]
        )
        return np.asarray(forecast, dtype=np.float64)

    def _states(self, y: FloatArray, m: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Level and trend after each observation; seasonal terms, ``season[t + m]`` being
        the one set at time ``t`` (the first ``m`` are the initial seasons)."""
        alpha, beta, gamma, phi = self._params
        level0, trend0, seasons0 = self._initial
        n = len(y)
        level = np.empty(n)
        trend = np.empty(n)
        season = np.empty(n + m)
        season[:m] = seasons0[:m] if len(seasons0) >= m else np.resize(seasons0, m)
        lvl, trd = level0, trend0
        for t in range(n):
            s_prev = season[t]
            lvl_prev, trd_prev = lvl, trd
            lvl = alpha * (y[t] - s_prev) + (1 - alpha) * (lvl_prev + phi * trd_prev)
            trd = beta * (lvl - lvl_prev) + (1 - beta) * phi * trd_prev
            season[t + m] = gamma * (y[t] - lvl_prev - phi * trd_prev) + (1 - gamma) * s_prev
            level[t] = lvl
            trend[t] = trd
        return level, trend, season
