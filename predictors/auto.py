"""The automatic chooser: what the predictive policy calls. It never raises into its caller.

``fit(series)``:

1. gaps (NaN, infinities, negatives) are filled with the last good value;
2. every candidate is fitted on all but the last ``selection_s`` of the history and
   backtested from every origin in that window (:func:`predictors.backtest.backtest`);
3. the candidate with the lowest total pinball loss over the forecast quantiles wins; the
   previous winner is kept unless another beats it by ``switch_margin`` (no flapping
   between near-equal models at every refit);
4. the winner is refitted on the whole history.

Too little history for a selection window, or every candidate failing, falls back to
seasonal naive (the last value when even one season is missing) with
``recent_error_ratio=None``, which the predictive policy treats as "not trusted" and so
scales reactively. Any exception is caught, kept in :attr:`AutoForecaster.last_error`, and
answered with that fallback.

``recent_error_ratio`` in the :class:`~dlscaler.model.Forecast` is the winner's total
pinball loss over the selection window divided by that of the last value used as every
quantile (1.0 = no better than the naive forecast).

``forecast(now_s, horizon_s, series=...)`` with a newer series refits on the schedule
(``refit_every_s``) and otherwise forecasts from the new end with the fitted parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Self

import numpy as np

from dlscaler.model import Forecast
from predictors.backtest import backtest, pinball_loss
from predictors.base import (
    DAY_S,
    DEFAULT_QUANTILES,
    Forecaster,
    IntArray,
    Quantiles,
    Series,
    tidy_quantiles,
)
from predictors.baselines import SeasonalNaive
from predictors.registry import CANDIDATES, ModelFactory
from predictors.series import fill_gaps

FALLBACK = "seasonal-naive-daily"


@dataclass(frozen=True)
class Selection:
    """One refit's choice and the evidence for it."""

    chosen: str
    losses: dict[str, float]
    """Total pinball loss per candidate over the selection window (failed ones absent)."""
    naive_loss: float
    failures: dict[str, str]
    fallback_reason: str = ""

    @property
    def error_ratio(self) -> float | None:
        if self.fallback_reason or self.chosen not in self.losses:
            return None
        loss = self.losses[self.chosen]
        if self.naive_loss > 0:
            return loss / self.naive_loss
        return 1.0 if loss == 0 else math.inf


class AutoForecaster:
    """Chooses among ``candidates`` by recent backtest; a :class:`Forecaster` itself."""

    name = "auto"

    def __init__(
        self,
        horizon_s: float = 3_600.0,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        *,
        horizon_steps: int | None = None,
        candidates: dict[str, ModelFactory] | None = None,
        selection_s: float = 3 * DAY_S,
        refit_every_s: float = 6 * 3_600.0,
        switch_margin: float = 0.02,
    ) -> None:
        self.horizon_s = horizon_s
        self.horizon_steps = horizon_steps
        self.quantiles = tuple(sorted({float(q) for q in quantiles} | {0.5}))
        self.candidates = dict(candidates) if candidates is not None else dict(CANDIDATES)
        self.selection_s = selection_s
        self.refit_every_s = refit_every_s
        self.switch_margin = switch_margin
        self.selection: Selection | None = None
        self.last_error: str | None = None
        self._model: Forecaster | None = None
        self._series: Series | None = None
        self._fitted_end_s = -math.inf

    # --- the Forecaster surface ------------------------------------------------------

    @property
    def chosen(self) -> str:
        return self.selection.chosen if self.selection else ""

    def fit(self, series: Series) -> Self:
        self._fitted_end_s = series.end_s
        try:
            clean = fill_gaps(series)
            self._series = clean
            self._select_and_fit(clean)
        except Exception as err:  # never into the policy: fall back and remember why
            self.last_error = f"{type(err).__name__}: {err}"
            self._fall_back(series, f"fit failed: {self.last_error}")
        return self

    def predict(self, h: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Quantiles:
        if self._series is None or len(self._series) == 0:
            return {float(q): np.zeros(h) for q in quantiles}
        at = self.predict_at(self._series, [len(self._series)], h, quantiles)
        return {q: values[0] for q, values in at.items()}

    def predict_at(
        self,
        series: Series,
        origins: Sequence[int] | IntArray,
        h: int,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ) -> Quantiles:
        cutoffs = np.asarray(origins, dtype=np.int64).reshape(-1)
        clean = fill_gaps(series)
        if self._model is not None:
            try:
                return self._model.predict_at(clean, cutoffs, h, quantiles)
            except Exception as err:
                self.last_error = f"{type(err).__name__}: {err}"
        # Last resort: the last value (0 before any), which cannot fail.
        last = np.where(cutoffs >= 1, clean.values[np.clip(cutoffs - 1, 0, None)], 0.0)
        point = np.repeat(last[:, None], h, axis=1)
        return tidy_quantiles({float(q): point for q in quantiles})

    # --- what the policy calls -----------------------------------------------------------

    def forecast(
        self,
        now_s: float | None = None,
        horizon_s: float | None = None,
        *,
        series: Series | None = None,
    ) -> Forecast:
        """Quantiles of demand per step from the end of the data (or from ``now_s`` when
        later) over ``horizon_s``. With ``series``, refits if the schedule says so."""
        try:
            if series is not None and self._due(series):
                self.fit(series)
            data = series if series is not None else self._series
            if data is None or len(data) == 0:
                return Forecast(
                    start_s=now_s or 0.0,
                    step_s=data.step_s if data is not None else 1.0,
                    quantiles=MappingProxyType({}),
                    model="none",
                )
            horizon = horizon_s if horizon_s is not None else self.horizon_s
            h = data.steps(horizon)
            # Data that ends before now: forecast through the gap and drop it.
            skip = 0
            if now_s is not None and now_s > data.end_s:
                skip = math.floor((now_s - data.end_s) / data.step_s)
            at = self.predict_at(data, [len(data)], h + skip, self.quantiles)
            return Forecast(
                start_s=data.end_s + skip * data.step_s,
                step_s=data.step_s,
                quantiles=MappingProxyType(
                    {q: tuple(float(v) for v in values[0, skip:]) for q, values in at.items()}
                ),
                model=self.chosen or "none",
                recent_error_ratio=self.selection.error_ratio if self.selection else None,
            )
        except Exception as err:
            self.last_error = f"{type(err).__name__}: {err}"
            return Forecast(start_s=now_s or 0.0, step_s=1.0, quantiles=MappingProxyType({}))

    def _due(self, series: Series) -> bool:
        return self._model is None or series.end_s - self._fitted_end_s >= self.refit_every_s

    # --- choosing ------------------------------------------------------------------------

    def _horizon(self, series: Series) -> int:
        return self.horizon_steps or series.steps(self.horizon_s)

    def _select_and_fit(self, series: Series) -> None:
        n, h = len(series), self._horizon(series)
        window = min(series.steps(self.selection_s), (n - 1) // 2)
        if window < h + 1:
            self._fall_back(
                series, f"{n} points: too short to choose a model (needs {2 * (h + 1) + 1})"
            )
            return
        result = backtest(
            self.candidates,
            series,
            h,
            quantiles=self.quantiles,
            first_origin=n - window,
            refit_every=window,
            include_baselines=False,
        )
        losses: dict[str, float] = {}
        failures: dict[str, str] = {}
        for name, scores in result.scores.items():
            if scores.failures or scores.fits == 0:
                failures[name] = "; ".join(scores.notes) or "failed"
            else:
                losses[name] = float(sum(scores.pinball[q] for q in self.quantiles))
        naive_loss = _point_loss(result.actual, series, result.origins, self.quantiles)
        ranked = sorted(losses, key=lambda name: (losses[name], list(losses).index(name)))
        previous = self.chosen
        if (
            ranked
            and previous in losses
            and losses[previous] <= (1 + self.switch_margin) * losses[ranked[0]]
        ):
            ranked.remove(previous)
            ranked.insert(0, previous)
        for name in ranked:
            model = self.candidates[name](h, self.quantiles)
            try:
                model.fit(series)
            except Exception as err:
                failures[name] = f"refit: {err}"
                continue
            self._model = model
            self.selection = Selection(name, losses, naive_loss, failures)
            return
        self._fall_back(series, "every candidate failed: " + "; ".join(failures.values()))

    def _fall_back(self, series: Series, reason: str) -> None:
        self.selection = Selection(FALLBACK, {}, math.nan, {}, fallback_reason=reason)
        self._model = None
        clean = fill_gaps(series)
        self._series = clean
        if len(clean):
            self._model = SeasonalNaive(DAY_S).fit(clean)


def _point_loss(
    actual: np.ndarray, series: Series, origins: IntArray, quantiles: Sequence[float]
) -> float:
    """Total pinball loss of the last value used as every quantile."""
    last = series.values[origins - 1][:, None]
    return float(
        sum(pinball_loss(actual, np.broadcast_to(last, actual.shape), q) for q in quantiles)
    )
