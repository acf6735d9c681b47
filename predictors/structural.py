"""The structural forecaster: demand ahead = GPUs running now that are still running, plus
GPUs of gangs arriving meanwhile that are still running.

For a cut-off ``T`` and the step ``k`` ahead (which starts ``k - 1`` steps after ``T``)::

    demand[k] = survivors(T, k - 1) + newcomers[k]

- **survivors**: of the GPUs running at ``T``, by age bucket, the expected share still
  running ``k - 1`` steps later (:func:`predictors.survival.fit_survival`, fitted on the
  last ``survival_window_s``). Their uncertainty grows with how many young GPUs there are:
  its variance is ``phi0 + phi1 * sum_a S_a (1 - S_a) GPUs_a`` (binomial over the buckets,
  inflated because gangs end together, with a floor for the lumpy ends of old gangs),
  ``phi`` fitted on the past errors, its shape their standardised quantiles.
- **newcomers**: everything else in the step's peak, i.e. the GPUs of gangs arriving after
  ``T`` still running then. Its distribution is that of the same quantity after past
  cut-offs, observed exactly: the last ``recent_s`` of them (weight ``recent_weight``:
  bursts go on) and those at the same time of day (``around_s`` either side) on each of the
  last ``days`` days. Half of each sample's weight (``similar_weight``) is kept only as far
  as the GPUs that arrived in the ``similar_window_s`` before it were about as many as
  before ``T`` (a kernel on the log of that count): a burst under way looks like bursts.
  Where gangs are replaced (a serving fleet rolling its replicas), more departures come
  with more arrivals; the share of the survivors' error that moves with the newcomers
  (``gamma``, fitted) travels with each newcomer sample instead of being drawn apart.

The two parts are combined by convolution: ``levels`` weighted quantiles of the newcomers
times ``nodes`` quantiles of the survivors' error, every pair equally likely; the forecast
quantiles are read from that mixture. Everything is known at the cut-off: survival shares
and error scales come from the fitted history, newcomer samples from windows that ended
before ``T``.

Needs the covariates of :func:`predictors.series.demand_series` (running GPUs by age,
arrived GPUs); without them ``fit`` raises ``ValueError``, and the automatic chooser leaves
this model out (:attr:`StructuralForecaster.required_covariates`).
"""

from __future__ import annotations

import numpy as np

from predictors.base import (
    DAY_S,
    BaseForecaster,
    FloatArray,
    IntArray,
    Quantiles,
    Series,
)
from predictors.series import AGE_COVARIATES, ARRIVED_GPUS
from predictors.survival import RunningState, fit_survival

MIN_ROWS = 48
"""Past cut-offs (with the steps after them observed) needed to fit the survival table and
the error scale of a step ahead."""


class StructuralForecaster(BaseForecaster):
    name = "structural"
    required_covariates: tuple[str, ...] = (*AGE_COVARIATES, ARRIVED_GPUS)
    """Without these ``fit`` raises; the automatic chooser leaves the model out of the
    choice for a series that lacks them instead of counting a failure at every refit."""

    def __init__(
        self,
        horizon: int = 12,
        *,
        survival_window_s: float = 28 * DAY_S,
        error_window_s: float = 7 * DAY_S,
        recent_s: float = 4 * 3_600.0,
        recent_weight: float = 2.0,
        days: int = 7,
        around_s: float = 1_800.0,
        similar_window_s: float = 3 * 3_600.0,
        similar_bandwidth: float = 0.7,
        similar_weight: float = 0.5,
        levels: int = 20,
        nodes: int = 9,
    ) -> None:
        super().__init__()
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1 step, got {horizon}")
        self.horizon = horizon
        self.survival_window_s = survival_window_s
        self.error_window_s = error_window_s
        self.recent_s = recent_s
        self.recent_weight = recent_weight
        self.days = days
        self.around_s = around_s
        self.similar_window_s = similar_window_s
        self.similar_bandwidth = similar_bandwidth
        self.similar_weight = similar_weight
        self.levels = levels
        self.nodes = nodes
        self.min_points = MIN_ROWS + horizon + 1
        self.survival: FloatArray = np.ones((horizon, 1))
        """(lag, age bucket) -> share still running that many steps after a cut-off."""
        self.phi: FloatArray = np.zeros((horizon, 2))
        self.gamma: FloatArray = np.zeros(horizon)
        self._newcomers_mean: FloatArray = np.zeros(horizon)
        self._error_nodes: FloatArray = np.zeros(nodes)

    # --- fitting -------------------------------------------------------------------------

    def _fit(self, series: Series) -> None:
        from scipy.optimize import nnls  # type: ignore[import-untyped]

        state = RunningState.of(series, self.name)
        n, h = len(series), self.horizon
        self.survival = fit_survival(state, n - series.steps(self.survival_window_s), n, h)
        self.phi, self.gamma = np.zeros((h, 2)), np.zeros(h)
        self._newcomers_mean = np.zeros(h)
        first = max(1, n - series.steps(self.error_window_s))
        standardised: list[FloatArray] = []
        for lag in range(h):
            origins = np.arange(first, n - lag)  # the step lag + 1 ahead is observed
            if len(origins) < MIN_ROWS:
                continue
            survived = state.survivors(origins, lag)
            running = state.running(origins)
            error = survived - running @ self.survival[lag]
            newcomers = series.values[origins + lag] - survived
            spread = float(np.var(newcomers))
            if spread > 0:
                moving = float(np.mean((error - error.mean()) * (newcomers - newcomers.mean())))
                # Only replacements (more ends with more arrivals) are carried along; a
                # positive share would be noise on these traces.
                self.gamma[lag] = min(0.0, max(-1.0, moving / spread))
            self._newcomers_mean[lag] = float(newcomers.mean())
            rest = error - self.gamma[lag] * (newcomers - self._newcomers_mean[lag])
            binomial = running @ (self.survival[lag] * (1 - self.survival[lag]))
            design = np.column_stack([np.ones_like(binomial), binomial])
            self.phi[lag] = nnls(design, rest**2)[0]
            scale = np.sqrt(design @ self.phi[lag])
            standardised.append(rest[scale > 1e-9] / scale[scale > 1e-9])
        pooled = np.concatenate(standardised) if standardised else np.zeros(0)
        midpoints = (np.arange(self.nodes) + 0.5) / self.nodes
        self._error_nodes = (
            np.quantile(pooled, midpoints) if len(pooled) >= self.nodes else np.zeros(self.nodes)
        )

    # --- forecasting ---------------------------------------------------------------------

    def _predict_at(
        self, series: Series, origins: IntArray, h: int, quantiles: list[float]
    ) -> Quantiles:
        state = RunningState.of(series, self.name)
        running = state.running(origins)
        similarity = self._arrival_level(series)
        now_level = similarity[origins - 1]
        levels = (np.arange(self.levels) + 0.5) / self.levels
        out = {q: np.zeros((len(origins), h)) for q in quantiles}
        for k in range(1, h + 1):
            fitted = min(k, self.horizon) - 1  # past the fitted horizon: the last fitted step
            survival = self.survival[fitted]
            expected = running @ survival
            scale = np.sqrt(
                self.phi[fitted, 0] + self.phi[fitted, 1] * (running @ (survival * (1 - survival)))
            )
            sources, weights = self._windows(series, origins, k)
            samples = self._newcomers(series, state, sources, k, fitted)
            closeness = np.exp(
                -np.abs(now_level[:, None] - similarity[np.maximum(sources, 1) - 1])
                / self.similar_bandwidth
            )
            weights = weights * (1 - self.similar_weight + self.similar_weight * closeness)
            newcomers = _weighted_levels(samples, weights, levels)
            mixture = (
                expected[:, None, None]
                + newcomers[:, :, None]
                + scale[:, None, None] * self._error_nodes[None, None, :]
            ).reshape(len(origins), -1)
            mixture.sort(axis=1)
            for q in quantiles:
                out[q][:, k - 1] = _sorted_quantile(mixture, q)
        return out

    def _windows(self, series: Series, origins: IntArray, k: int) -> tuple[IntArray, FloatArray]:
        """Past cut-offs whose step ``k`` ahead was observed before each origin: the recent
        ones, then the same time of day on past days. Weight 0 marks those before the data."""
        recent = -k - np.arange(series.steps(self.recent_s))
        day = series.steps(DAY_S)
        around = series.steps(self.around_s) if self.around_s > 0 else 0
        daily = np.array(
            [-d * day + j for d in range(1, self.days + 1) for j in range(-around, around + 1)],
            dtype=np.int64,
        )
        daily = daily[daily <= -k]
        offsets = np.concatenate([recent, daily])
        base = np.concatenate([np.full(len(recent), self.recent_weight), np.ones(len(daily))])
        sources = origins[:, None] + offsets[None, :]
        weights = np.where(sources >= 1, base[None, :], 0.0)
        return sources, weights

    def _newcomers(
        self, series: Series, state: RunningState, sources: IntArray, k: int, fitted: int
    ) -> FloatArray:
        """Demand in step ``k`` after each source cut-off not owed to GPUs running at it,
        with the share of the survivors' error that moves with it (``gamma``)."""
        seen = sources >= 1
        samples = np.zeros(sources.shape)
        if not seen.any():
            return samples
        # Windows of neighbouring origins overlap: compute each source cut-off once.
        first, last = int(sources[seen].min()), int(sources[seen].max())
        span = np.arange(first, last + 1)
        newcomers = series.values[span + k - 1] - state.survivors(span, k - 1)
        mean = self._newcomers_mean[fitted]
        newcomers = newcomers + self.gamma[fitted] * (newcomers - mean)
        samples[seen] = newcomers[sources[seen] - first]
        return samples

    def _arrival_level(self, series: Series) -> FloatArray:
        """log(1 + GPUs arrived in the ``similar_window_s`` up to the end of each step)."""
        arrived = np.concatenate([[0.0], np.cumsum(series.exog[ARRIVED_GPUS])])
        ends = np.arange(1, len(series) + 1)
        width = series.steps(self.similar_window_s)
        recent = arrived[ends] - arrived[np.maximum(ends - width, 0)]
        return np.asarray(np.log1p(np.maximum(recent, 0.0)), dtype=np.float64)


def _weighted_levels(samples: FloatArray, weights: FloatArray, levels: FloatArray) -> FloatArray:
    """Per row, the weighted quantiles of ``samples`` at ``levels`` (each sample holds the
    middle of its share of the cumulative weight); 0 for a row without weight."""
    rows = len(samples)
    kept = weights > 0
    values = np.where(kept, samples, np.inf)
    order = np.argsort(values, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    ordered = np.take_along_axis(np.where(kept, weights, 0.0), order, axis=1)
    cumulative = np.cumsum(ordered, axis=1)
    total = cumulative[:, -1:]
    middle = (cumulative - ordered / 2) / np.where(total > 0, total, 1.0)
    count = kept.sum(axis=1)
    # Per row, how many samples sit below each level: one searchsorted over all rows at
    # once, each row's midpoints (within [0, 1], unweighted ones at 1) shifted by 2 * row.
    shift = 2.0 * np.arange(rows)[:, None]
    width = samples.shape[1]
    below = np.searchsorted((middle + shift).ravel(), (levels[None, :] + shift).ravel())
    below = below.reshape(rows, len(levels)) - width * np.arange(rows)[:, None]
    index = np.minimum(below, np.maximum(count - 1, 0)[:, None])
    picked = np.take_along_axis(values, index, axis=1)
    return np.asarray(np.where(count[:, None] > 0, picked, 0.0), dtype=np.float64)


def _sorted_quantile(sorted_rows: FloatArray, q: float) -> FloatArray:
    """The ``q`` quantile of equally likely values sorted along each row (midpoint rule)."""
    m = sorted_rows.shape[1]
    position = min(max(q * m - 0.5, 0.0), m - 1.0)
    low = int(np.floor(position))
    high = min(low + 1, m - 1)
    part = position - low
    return np.asarray((1 - part) * sorted_rows[:, low] + part * sorted_rows[:, high])
