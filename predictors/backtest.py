"""Rolling-origin backtesting: every model scored the same way, on the same windows.

Origins run from ``first_origin`` to the last one with ``h`` actuals after it, every
``stride`` steps. Every ``refit_every`` steps each model is refitted on everything observed
up to that point (never later data); in between it forecasts from each origin with its
fitted parameters (``predict_at``), as a controller that refits on a schedule would. This is
statsforecast's ``cross_validation`` with ``refit=k``.

Scores, over all origins and all ``h`` steps of each: MAE of the p50, pinball loss per
quantile, share of actuals at or below the p90 ("coverage"), mean fit time, and the time of
one ``predict`` call. Ratios compare with the baselines run in the same backtest:
``rel_mae`` divides by the best of last value / seasonal naive, ``rel_pinball_p90`` by
naive quantiles.

Each model is one object refitted at every block, as in a controller (so a model with
memory, like the chooser's hysteresis, keeps it). A block whose fit raises is forecast with
the last value and counted: ``failures`` is in the scores.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from predictors.base import (
    DEFAULT_QUANTILES,
    FloatArray,
    Forecaster,
    IntArray,
    Quantiles,
    Series,
    cutoff_windows,
)
from predictors.registry import (
    BASELINES,
    POINT_BASELINES,
    QUANTILE_BASELINE,
    ModelFactory,
)

ProgressFn = Callable[[str, int, int], None]
"""(model name, blocks done, blocks in all)."""


def pinball_loss(actual: FloatArray, forecast: FloatArray, q: float) -> float:
    """Mean quantile (pinball) loss: q * under-forecast + (1 - q) * over-forecast."""
    diff = actual - forecast
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)))


@dataclass(frozen=True)
class Scores:
    mae: float
    pinball: Mapping[float, float]
    coverage_p90: float
    fit_s: float
    predict_s: float
    fits: int
    failures: int = 0
    notes: tuple[str, ...] = ()

    @property
    def pinball_p90(self) -> float:
        return self.pinball.get(0.9, math.nan)


def score(actual: FloatArray, forecast: Quantiles) -> tuple[float, dict[float, float], float]:
    """(MAE of the p50, pinball loss per quantile, coverage of the p90)."""
    if 0.5 not in forecast:
        raise ValueError("scoring needs the 0.5 quantile (the point forecast for MAE)")
    mae = float(np.mean(np.abs(actual - forecast[0.5])))
    pinball = {q: pinball_loss(actual, values, q) for q, values in forecast.items()}
    upper = forecast.get(0.9, forecast[max(forecast)])
    coverage = float(np.mean(actual <= upper))
    return mae, pinball, coverage


@dataclass(frozen=True)
class BacktestResult:
    step_s: float
    horizon: int
    origins: IntArray
    actual: FloatArray
    """(origins, h): the demand that followed each origin."""
    scores: Mapping[str, Scores]
    forecasts: Mapping[str, Quantiles] = field(default_factory=dict)
    chosen: Mapping[str, str] = field(default_factory=dict)
    """For choosing models (``auto``): the model each refit chose, by block start time."""

    def best_point_baseline(self) -> str:
        present = [name for name in POINT_BASELINES if name in self.scores]
        return min(present, key=lambda name: self.scores[name].mae)

    def relative(self, name: str) -> tuple[float, float]:
        """(MAE / best point baseline's MAE, p90 pinball / naive quantiles' p90 pinball)."""
        s = self.scores[name]
        best = self.scores[self.best_point_baseline()].mae
        base = self.scores[QUANTILE_BASELINE].pinball_p90
        return _ratio(s.mae, best), _ratio(s.pinball_p90, base)

    def table(self) -> dict[str, dict[str, Any]]:
        """The ``models`` object of ``benchmarks/results/forecast.json``."""
        out: dict[str, dict[str, Any]] = {}
        for name, s in self.scores.items():
            rel_mae, rel_pinball = self.relative(name)
            out[name] = {
                "mae": round(s.mae, 4),
                "rel_mae": round(rel_mae, 4),
                "pinball_p90": round(s.pinball_p90, 4),
                "rel_pinball_p90": round(rel_pinball, 4),
                "coverage_p90": round(s.coverage_p90, 4),
                "fit_s": round(s.fit_s, 4),
                "predict_s": round(s.predict_s, 5),
                "fits": s.fits,
                "failures": s.failures,
            }
        return out


def _ratio(value: float, base: float) -> float:
    if base > 0:
        return value / base
    return 1.0 if value == base else math.inf


def backtest(
    models: Mapping[str, ModelFactory],
    series: Series,
    h: int,
    *,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    first_origin: int | None = None,
    stride: int = 1,
    refit_every: int | None = None,
    include_baselines: bool = True,
    keep_forecasts: bool = False,
    progress: ProgressFn | None = None,
) -> BacktestResult:
    """Rolling-origin backtest of ``models`` (name -> factory(h, quantiles)) on ``series``.

    ``first_origin`` defaults to a quarter of the series; ``refit_every`` (steps) to one
    day. Baselines are added unless ``include_baselines`` is false (ratios need them).
    """
    qs = tuple(sorted({*quantiles, 0.5, 0.9}))
    n = len(series)
    if h < 1:
        raise ValueError(f"horizon must be >= 1 step, got {h}")
    first = first_origin if first_origin is not None else max(1, n // 4)
    if not 1 <= first <= n - h:
        raise ValueError(
            f"first origin {first} leaves no forecast with {h} actual steps after it in a "
            f"series of {n} points; use a shorter warm-up or a longer trace"
        )
    every = refit_every or series.steps(86_400.0)
    origins = np.arange(first, n - h + 1, max(1, stride), dtype=np.int64)
    actual = cutoff_windows(series.values, origins, np.arange(h))
    factories = dict(BASELINES) if include_baselines else {}
    factories.update(models)

    scores: dict[str, Scores] = {}
    forecasts: dict[str, Quantiles] = {}
    chosen: dict[str, str] = {}
    for name, factory in factories.items():
        result, choices = _run_model(name, factory, series, origins, h, qs, every, progress)
        scores[name] = _scores(actual, result.forecast, result)
        if keep_forecasts:
            forecasts[name] = result.forecast
        if choices:
            chosen.update({f"{name}@{start_s:.0f}": c for start_s, c in choices})
    return BacktestResult(
        step_s=series.step_s,
        horizon=h,
        origins=origins,
        actual=actual,
        scores=scores,
        forecasts=forecasts,
        chosen=chosen,
    )


@dataclass
class _Run:
    forecast: Quantiles
    fit_times: list[float] = field(default_factory=list)
    predict_times: list[float] = field(default_factory=list)
    failures: int = 0
    notes: list[str] = field(default_factory=list)


def _run_model(
    name: str,
    factory: ModelFactory,
    series: Series,
    origins: IntArray,
    h: int,
    qs: tuple[float, ...],
    every: int,
    progress: ProgressFn | None,
) -> tuple[_Run, list[tuple[float, str]]]:
    run = _Run(forecast={q: np.zeros((len(origins), h)) for q in qs})
    choices: list[tuple[float, str]] = []
    block_starts = np.arange(int(origins[0]), int(origins[-1]) + 1, every)
    instance = factory(h, qs)
    for done, start in enumerate(block_starts):
        in_block = (origins >= start) & (origins < start + every)
        if not in_block.any():
            continue
        model: Forecaster | None = None
        began = time.perf_counter()
        try:
            instance.fit(series.head(int(start)))
        except Exception as err:  # a failing model is scored as failing, not fatal
            run.failures += 1
            if len(run.notes) < 3:
                run.notes.append(f"fit at origin {start}: {err}")
        else:
            run.fit_times.append(time.perf_counter() - began)
            model = instance
            began = time.perf_counter()
            model.predict(h, qs)
            run.predict_times.append(time.perf_counter() - began)
            picked = getattr(model, "chosen", None)
            if isinstance(picked, str):
                choices.append((series.start_s + int(start) * series.step_s, picked))
        block = origins[in_block]
        predictions: Quantiles | None = None
        if model is not None:
            try:
                predictions = model.predict_at(series, block, h, qs)
            except Exception as err:
                run.failures += 1
                if len(run.notes) < 3:
                    run.notes.append(f"predict at origin {start}: {err}")
        if predictions is None:
            last = series.values[block - 1][:, None]
            predictions = {q: np.repeat(last, h, axis=1) for q in qs}
        for q in qs:
            run.forecast[q][in_block] = predictions[q]
        if progress is not None:
            progress(name, done + 1, len(block_starts))
    return run, choices


def _scores(actual: FloatArray, forecast: Quantiles, run: _Run) -> Scores:
    mae, pinball, coverage = score(actual, forecast)
    return Scores(
        mae=mae,
        pinball=pinball,
        coverage_p90=coverage,
        fit_s=float(np.mean(run.fit_times)) if run.fit_times else math.nan,
        predict_s=float(np.mean(run.predict_times)) if run.predict_times else math.nan,
        fits=len(run.fit_times),
        failures=run.failures,
        notes=tuple(run.notes),
    )
