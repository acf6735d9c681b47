"""The automatic chooser: what the predictive policy calls. It never raises into its caller.

``fit(series)``:

1. gaps (NaN, infinities, negatives) are filled with the last good value;
2. every candidate is fitted on all but the last ``selection_s`` of the history and
   backtested from every origin in that window (:func:`predictors.backtest.backtest`),
   except those whose ``required_covariates`` the series lacks: they are left out (listed
   in ``Selection.skipped``, not counted as failures);
3. for each quantile separately, the option with the lowest pinball loss at that quantile
   wins, the options being each candidate and the average of the two best (see
   :mod:`predictors.blend`). Per quantile because the policy uses the p50 and the p90 for
   different things and the best point forecaster is often not the best at the tail.
   Three days of evidence are noisy, so incumbents get a margin: the preferred option
   (for the p90, the average of naive quantiles and the structural model, which wins most
   often over the bundled traces; the average with the regression when the series has no
   covariates) is kept unless another is ``prefer_margin`` (25%) better, and otherwise the
   previous choice unless another is ``switch_margin`` (5%) better;
4. the chosen models are refitted on the whole history.

Too little history for a selection window, or every candidate failing, falls back to
seasonal naive (the last value when even one season is missing) with
``recent_error_ratio=None``, which the predictive policy treats as "not trusted" and so
scales reactively. Any exception is caught, kept in :attr:`AutoForecaster.last_error`, and
answered with that fallback.

``recent_error_ratio`` in the :class:`~dlscaler.model.Forecast` is the choice's pinball
loss over the selection window, summed over the quantiles, divided by that of the last
value used as every quantile (1.0 = no better than the naive forecast).

``forecast(now_s, horizon_s, series=...)`` with a newer series refits on the schedule
(``refit_every_s``) and otherwise forecasts from the new end with the fitted parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Self

import numpy as np

from dlscaler.model import Forecast
from predictors.backtest import backtest, pinball_loss
from predictors.base import (
    DAY_S,
    DEFAULT_QUANTILES,
    FloatArray,
    Forecaster,
    IntArray,
    Quantiles,
    Series,
    tidy_quantiles,
)
from predictors.baselines import SeasonalNaive
from predictors.blend import QuantileBlend, Recipe, describe
from predictors.registry import CANDIDATES, POINT_BASELINES, ModelFactory
from predictors.series import fill_gaps

FALLBACK = "seasonal-naive-daily"
PREFERRED: dict[float, tuple[str, ...]] = {
    0.9: ("naive-quantiles+structural", "naive-quantiles+regression")
}
"""The p90 that wins most often in the bundled traces' backtests (docs/forecasting.md): kept
while within ``prefer_margin`` of the recent best, so that noise in a few days of evidence
does not swap the tail model back and forth. Alternatives in order: the first whose models
all fitted is the incumbent (the structural model needs the running-age and arrival
covariates; a series without them keeps the regression average). (The p50 needs no such
prior: the best point forecaster is stable from one window to the next.)"""
POINT_FORECASTERS = frozenset(POINT_BASELINES)
"""Models whose every quantile is the same point: candidates for the p50 only (as a p90 they
would win any calm window and then cover nothing when demand moves)."""


@dataclass(frozen=True)
class Selection:
    """One refit's choice and the evidence for it."""

    recipe: Recipe
    losses: dict[float, dict[str, float]] = field(default_factory=dict)
    """Per quantile, the pinball loss of every option over the selection window."""
    naive_loss: float = math.nan
    """Summed over the quantiles, for the last value used as every quantile."""
    failures: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    """Candidates left out because the series lacks covariates they need (not failures: a
    demand-only series, as the controller's, leaves the same ones out at every refit)."""
    fallback_reason: str = ""

    @property
    def chosen(self) -> str:
        return describe(self.recipe)

    @property
    def error_ratio(self) -> float | None:
        if self.fallback_reason:
            return None
        loss = sum(self.losses[q]["+".join(m)] for q, m in self.recipe.items())
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
        switch_margin: float = 0.05,
        prefer: Mapping[float, str | Sequence[str]] | None = None,
        prefer_margin: float = 0.25,
    ) -> None:
        self.horizon_s = horizon_s
        self.horizon_steps = horizon_steps
        self.quantiles = tuple(sorted({float(q) for q in quantiles} | {0.5}))
        self.candidates = dict(candidates) if candidates is not None else dict(CANDIDATES)
        self.selection_s = selection_s
        self.refit_every_s = refit_every_s
        self.switch_margin = switch_margin
        self.prefer = {
            float(q): (options,) if isinstance(options, str) else tuple(options)
            for q, options in (PREFERRED if prefer is None else prefer).items()
        }
        self.prefer_margin = prefer_margin
        self.selection: Selection | None = None
        self.last_error: str | None = None
        self._model: QuantileBlend | None = None
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
            return {float(q): np.zeros(h) for q in sorted(quantiles)}
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
        last = np.zeros(len(cutoffs))
        seen = (cutoffs >= 1) & (cutoffs <= len(clean))
        last[seen] = clean.values[cutoffs[seen] - 1]
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
            if horizon_s is not None and horizon_s > self.horizon_s and not self.horizon_steps:
                # A longer look ahead than the models were fitted for: refit for it.
                self.horizon_s = horizon_s
                self._model = None
            if series is not None and self._due(series):
                self.fit(series)
            elif self._model is None and self._series is not None:
                self.fit(self._series)
            data = series if series is not None else self._series
            if data is None or len(data) == 0:
                return Forecast(
                    start_s=now_s or 0.0,
                    step_s=data.step_s if data is not None else 1.0,
                    quantiles=MappingProxyType({}),
                    model="none",
                )
            h = data.steps(horizon_s if horizon_s is not None else self.horizon_s)
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

    def _select_and_fit(self, series: Series) -> None:
        n = len(series)
        h = self.horizon_steps or series.steps(self.horizon_s)
        window = min(series.steps(self.selection_s), (n - 1) // 2)
        if window < h + 1:
            needed = 2 * (h + 1) + 1
            self._fall_back(series, f"{n} points: too short to choose a model (needs {needed})")
            return
        skipped = _lacking_covariates(self.candidates, series, h, self.quantiles)
        if skipped and len(skipped) == len(self.candidates):
            self._fall_back(
                series, "no candidate can fit this series: " + "; ".join(skipped.values())
            )
            return
        result = backtest(
            {name: f for name, f in self.candidates.items() if name not in skipped},
            series,
            h,
            quantiles=self.quantiles,
            first_origin=n - window,
            refit_every=window,
            include_baselines=False,
            keep_forecasts=True,
        )
        failures = {
            name: "; ".join(s.notes) or "failed"
            for name, s in result.scores.items()
            if s.failures or s.fits == 0
        }
        usable = [name for name in result.scores if name not in failures]
        if not usable:
            self._fall_back(series, "every candidate failed: " + "; ".join(failures.values()))
            return
        previous = self.selection.recipe if self.selection else {}
        preferred = {q: self._preferred(q, usable) for q in self.quantiles}
        incumbents = {q: [o for o in (preferred[q], previous.get(q)) if o] for q in self.quantiles}
        margins = {
            q: [
                m
                for o, m in (
                    (preferred[q], self.prefer_margin),
                    (previous.get(q), self.switch_margin),
                )
                if o
            ]
            for q in self.quantiles
        }
        spread = [m for m in usable if m not in POINT_FORECASTERS] or usable
        losses = {
            q: _option_losses(
                result.actual,
                {m: result.forecasts[m][q] for m in (usable if q == 0.5 else spread)},
                q,
                incumbents[q],
            )
            for q in self.quantiles
        }
        ranked = {q: self._rank(losses[q], incumbents[q], margins[q]) for q in self.quantiles}
        fitted: dict[str, Forecaster] = {}
        recipe: dict[float, tuple[str, ...]] = {}
        for q in self.quantiles:
            for option in ranked[q]:
                members = tuple(option.split("+"))
                if all(self._refit(name, h, series, fitted, failures) for name in members):
                    recipe[q] = members
                    break
        if len(recipe) < len(self.quantiles):
            self._fall_back(series, "no candidate refits: " + "; ".join(failures.values()))
            return
        last = series.values[result.origins - 1][:, None]
        naive = np.broadcast_to(last, result.actual.shape)
        naive_loss = sum(pinball_loss(result.actual, naive, q) for q in self.quantiles)
        self._model = QuantileBlend(recipe, fitted)
        self.selection = Selection(recipe, losses, naive_loss, failures, skipped)

    def _preferred(self, q: float, usable: Sequence[str]) -> tuple[str, ...] | None:
        """The first preferred option for ``q`` whose models all fitted."""
        for option in self.prefer.get(q, ()):
            members = tuple(option.split("+"))
            if all(name in usable for name in members):
                return members
        return None

    def _rank(
        self, losses: dict[str, float], incumbents: list[tuple[str, ...]], margins: list[float]
    ) -> list[str]:
        """Options best first (ties: the order of ``candidates``, simplest first), except
        that an incumbent (the preferred option, else the previous choice) stays first while
        within its margin of the best."""
        order = list(losses)
        ranked = sorted(order, key=lambda name: (losses[name], order.index(name)))
        for members, margin in zip(incumbents, margins, strict=True):
            keep = "+".join(members)
            if keep in losses and losses[keep] <= (1 + margin) * losses[ranked[0]]:
                ranked.remove(keep)
                ranked.insert(0, keep)
                break
        return ranked

    def _refit(
        self,
        name: str,
        h: int,
        series: Series,
        fitted: dict[str, Forecaster],
        failures: dict[str, str],
    ) -> bool:
        if name in fitted:
            return True
        if name in failures:
            return False
        model = self.candidates[name](h, self.quantiles)
        try:
            model.fit(series)
        except Exception as err:
            failures[name] = f"refit: {err}"
            return False
        fitted[name] = model
        return True

    def _fall_back(self, series: Series, reason: str) -> None:
        self.selection = Selection({q: (FALLBACK,) for q in self.quantiles}, fallback_reason=reason)
        self._model = None
        clean = fill_gaps(series)
        self._series = clean
        if len(clean):
            model = SeasonalNaive(DAY_S).fit(clean)
            self._model = QuantileBlend(self.selection.recipe, {FALLBACK: model})


def _lacking_covariates(
    candidates: Mapping[str, ModelFactory], series: Series, h: int, qs: tuple[float, ...]
) -> dict[str, str]:
    """Candidates whose ``required_covariates`` the series lacks -> why they are left out."""
    lacking = {}
    for name, factory in candidates.items():
        needs = getattr(factory(h, qs), "required_covariates", ())
        missing = [covariate for covariate in needs if covariate not in series.exog]
        if missing:
            lacking[name] = f"{name}: the series lacks the covariates {', '.join(missing)}"
    return lacking


def _option_losses(
    actual: FloatArray,
    forecasts: dict[str, FloatArray],
    q: float,
    incumbents: list[tuple[str, ...]],
) -> dict[str, float]:
    """Pinball loss at ``q`` of each model, of the average of the two best, and of the
    incumbent pairs (so that they can be kept)."""
    losses = {name: pinball_loss(actual, values, q) for name, values in forecasts.items()}
    pairs = [tuple(sorted(losses, key=losses.__getitem__)[:2]), *incumbents]
    for pair in pairs:
        if len(pair) == 2 and all(name in forecasts for name in pair):
            a, b = sorted(pair, key=list(forecasts).index)
            losses[f"{a}+{b}"] = pinball_loss(actual, (forecasts[a] + forecasts[b]) / 2, q)
    return losses
