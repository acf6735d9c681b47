"""A residual regression on top of the last value: ``y[t+k] - y[t]`` from features.

Two scikit-learn parts, both fitted on a recent window (28 days by default: the spread of
demand drifts, and a bounded window keeps a refit fast however long the history is):

- the centre: a ridge regression (standardised features, one output per step ``k``) of the
  change. The penalty shrinks towards "no change", i.e. towards the naive forecast, so the
  model only departs from the last value where the features consistently say so; with the
  running-age covariates it learns what share of young jobs' GPUs will be gone in ``k``
  steps. The median of its residuals per ``k`` is added for the p50.
- the spread: for each other quantile, a linear quantile regression (pinball loss) of the
  centre's residual on :func:`~predictors.features.spread_features` and the step ``k``. So
  the p90 widens when demand is jumpy or many young jobs are running and narrows when it is
  calm, instead of one fixed width as in naive quantiles.

Quantiles other than the fitted ones are interpolated linearly between fitted neighbours
(clamped beyond the outermost ones). ``shrink`` (0 by default) pulls each spread quantile
towards the plain empirical quantile of the residuals; the automatic chooser's average with
naive quantiles does that job better on the bundled traces.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from predictors.base import (
    DAY_S,
    DEFAULT_QUANTILES,
    BaseForecaster,
    FloatArray,
    IntArray,
    Quantiles,
    Series,
)
from predictors.features import build_features, spread_features

MIN_TRAINING_ROWS = 48


class QuantileRegression(BaseForecaster):
    name = "regression"

    def __init__(
        self,
        window_s: float = 28 * DAY_S,
        horizon: int = 12,
        spread_window_s: float = 7 * DAY_S,
        quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
        ridge_alpha: float = 1.0,
        spread_rows: int = 4_000,
        shrink: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1 step, got {horizon}")
        self.window_s = window_s
        self.spread_window_s = spread_window_s
        self.horizon = horizon
        self.quantiles = tuple(sorted(quantiles))
        self.ridge_alpha = ridge_alpha
        self.spread_rows = spread_rows
        self.shrink = shrink
        self.seed = seed
        self.min_points = MIN_TRAINING_ROWS + horizon + 1
        self._centre: Any = None
        self._median: FloatArray = np.zeros(horizon)
        self._spread: dict[float, Any] = {}
        self._flat: dict[float, FloatArray] = {}

    def _fit(self, series: Series) -> None:
        from sklearn.linear_model import QuantileRegressor, Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        n, h = len(series), self.horizon
        first = max(1, n - series.steps(self.window_s))
        origins = np.arange(first, n - h + 1)
        if len(origins) < MIN_TRAINING_ROWS:
            raise ValueError(
                f"{self.name}: needs {MIN_TRAINING_ROWS} training origins with {h} steps "
                f"after each, got {len(origins)}"
            )
        y = series.values
        targets = y[origins[:, None] - 1 + np.arange(1, h + 1)[None, :]] - y[origins - 1][:, None]
        features = build_features(series, origins)
        self._centre = make_pipeline(StandardScaler(), Ridge(alpha=self.ridge_alpha))
        self._centre.fit(features, targets)
        residuals = targets - self._centre.predict(features)
        self._median = np.median(residuals, axis=0)

        # One pinball-loss fit per quantile over (origin, k) pairs: a random subset keeps
        # the linear program small.
        recent = residuals[-series.steps(self.spread_window_s) :]
        offset = len(residuals) - len(recent)
        rng = np.random.default_rng(self.seed)
        pick = rng.choice(recent.size, size=min(recent.size, self.spread_rows), replace=False)
        rows, steps = np.divmod(pick, h)
        rows += offset
        design = _spread_design(spread_features(series, origins[rows]), steps + 1, h)
        scale = np.maximum(design.std(axis=0), 1e-9)
        self._spread = {}
        self._flat = {q: np.quantile(recent, q, axis=0) for q in self.quantiles}
        for q in self.quantiles:
            if q == 0.5:
                continue
            model = QuantileRegressor(quantile=q, alpha=0.0, solver="highs-ipm")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(design / scale, residuals[rows, steps])
            self._spread[q] = (model, scale)

    def _predict_at(
        self, series: Series, origins: IntArray, h: int, quantiles: list[float]
    ) -> Quantiles:
        # Steps past the fitted horizon repeat the last fitted step (a flat extension: the
        # chooser refits for a longer horizon when one is asked for).
        k = np.minimum(np.arange(h), self.horizon - 1)
        last = series.values[origins - 1][:, None]
        centre = last + self._centre.predict(build_features(series, origins))[:, k]
        fitted: dict[float, FloatArray] = {0.5: centre + self._median[None, k]}
        if self._spread:
            spread = spread_features(series, origins)
            steps = np.tile(k + 1, len(origins))
            design = _spread_design(np.repeat(spread, h, axis=0), steps, self.horizon)
            w = self.shrink
            for q, (model, scale) in self._spread.items():
                conditional = model.predict(design / scale).reshape(len(origins), h)
                fitted[q] = centre + (1 - w) * conditional + w * self._flat[q][None, k]
        return {q: _interpolate(fitted, q) for q in quantiles}


def _spread_design(spread: FloatArray, steps: IntArray, horizon: int) -> FloatArray:
    """Each spread feature, alone and times the relative step (uncertainty grows with k)."""
    ratio = (steps / horizon)[:, None]
    return np.hstack([ratio, np.sqrt(ratio), spread, spread * ratio])


def _interpolate(fitted: dict[float, FloatArray], q: float) -> FloatArray:
    if q in fitted:
        return fitted[q]
    levels = sorted(fitted)
    if q <= levels[0]:
        return fitted[levels[0]]
    if q >= levels[-1]:
        return fitted[levels[-1]]
    upper = next(level for level in levels if level > q)
    lower = max(level for level in levels if level < q)
    weight = (q - lower) / (upper - lower)
    return (1 - weight) * fitted[lower] + weight * fitted[upper]
