"""The one surface every demand forecaster has: ``fit(series)`` and ``predict(h, quantiles)``.

A :class:`Series` is demanded GPUs at a fixed step, with the absolute time of its first
step (so calendar features line up) and optional *past covariates*: arrays aligned with the
values that are known by the end of each step (GPUs that arrived, GPUs of running jobs by
age, ...). Models look covariates up by name and ignore those they do not know.

Besides ``predict`` (from the end of the fitted series) every model has ``predict_at``: the
forecasts it would have made, with its fitted parameters, after observing the first ``o``
points of a (longer) series, for many cutoffs ``o`` at once. That is what rolling-origin
backtesting needs (statsforecast's ``cross_validation(refit=False)``) and it lets the cheap
models vectorise instead of being called once per origin.

Every forecast leaves through :func:`tidy_quantiles`: quantiles sorted, non-crossing
(p10 <= p50 <= p90, the p50 kept as the model gave it) and non-negative, whatever the model
produced.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Quantiles = dict[float, FloatArray]
"""quantile -> forecast; an array of ``h`` values (``predict``) or ``(origins, h)``
(``predict_at``)."""

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
DAY_S = 86_400.0
WEEK_S = 7 * DAY_S

_NO_EXOG: Mapping[str, FloatArray] = MappingProxyType({})


@dataclass(frozen=True, eq=False)
class Series:
    """Demanded GPUs per step: ``values[i]`` covers ``[start_s + i*step_s, ... + step_s)``.

    ``exog`` holds past covariates aligned with ``values``: ``exog[name][i]`` is known by the
    end of step ``i``. ``start_s`` is absolute (epoch seconds in the controller, seconds from
    the trace start in the simulator and backtests).
    """

    values: FloatArray
    step_s: float
    start_s: float = 0.0
    exog: Mapping[str, FloatArray] = field(default_factory=lambda: _NO_EXOG)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"series values must be one-dimensional, got shape {values.shape}")
        if not self.step_s > 0:
            raise ValueError(f"series step_s must be > 0, got {self.step_s}")
        exog = {}
        for name, column in self.exog.items():
            array = np.asarray(column, dtype=np.float64)
            if array.shape != values.shape:
                raise ValueError(
                    f"covariate {name!r} has shape {array.shape}, the values have "
                    f"{values.shape}; covariates must be aligned with the values"
                )
            exog[name] = array
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "exog", MappingProxyType(exog))

    def __len__(self) -> int:
        return len(self.values)

    @property
    def end_s(self) -> float:
        """When the step after the last observed one starts: a forecast's ``start_s``."""
        return self.start_s + len(self.values) * self.step_s

    def head(self, n: int) -> Series:
        """The first ``n`` points (what was known at the end of step ``n - 1``)."""
        return Series(
            self.values[:n],
            self.step_s,
            self.start_s,
            {name: column[:n] for name, column in self.exog.items()},
        )

    def tail(self, n: int) -> Series:
        """The last ``n`` points, with ``start_s`` moved so calendar times stay right."""
        first = max(0, len(self.values) - n)
        return Series(
            self.values[first:],
            self.step_s,
            self.start_s + first * self.step_s,
            {name: column[first:] for name, column in self.exog.items()},
        )

    def steps(self, seconds: float) -> int:
        """How many whole steps ``seconds`` spans (at least 1)."""
        return max(1, round(seconds / self.step_s))


@runtime_checkable
class Forecaster(Protocol):
    """What the backtest, the automatic chooser and the CLI need from a model."""

    name: str

    def fit(self, series: Series) -> Self: ...

    def predict(self, h: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Quantiles:
        """Quantiles of the next ``h`` steps after the fitted series: q -> array of ``h``."""
        ...

    def predict_at(
        self,
        series: Series,
        origins: Sequence[int] | IntArray,
        h: int,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ) -> Quantiles:
        """With the fitted parameters, forecast ``h`` steps after observing ``series.values[:o]``
        for each cutoff ``o`` in ``origins``: q -> array of shape ``(len(origins), h)``."""
        ...


class NotFittedError(RuntimeError):
    """predict() before fit()."""


class BaseForecaster(ABC):
    """Validation and tidying shared by the models; each model writes ``_fit``/``_predict_at``.

    ``min_points`` is the shortest history the model can fit on; shorter raises
    ``ValueError`` (the automatic chooser then falls back to a simpler model).
    """

    name = "base"
    min_points = 1

    def __init__(self) -> None:
        self._series: Series | None = None

    def fit(self, series: Series) -> Self:
        check_series(series, self.min_points, self.name)
        self._fit(series)
        self._series = series
        return self

    def predict(self, h: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Quantiles:
        if self._series is None:
            raise NotFittedError(f"{self.name}: call fit(series) before predict()")
        at = self.predict_at(self._series, [len(self._series)], h, quantiles)
        return {q: values[0] for q, values in at.items()}

    def predict_at(
        self,
        series: Series,
        origins: Sequence[int] | IntArray,
        h: int,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ) -> Quantiles:
        if self._series is None:
            raise NotFittedError(f"{self.name}: call fit(series) before predict_at()")
        cutoffs = np.asarray(origins, dtype=np.int64).reshape(-1)
        if h < 1:
            raise ValueError(f"{self.name}: horizon h must be >= 1 step, got {h}")
        if cutoffs.size and (cutoffs.min() < 1 or cutoffs.max() > len(series)):
            raise ValueError(
                f"{self.name}: origins must lie in [1, {len(series)}] (points observed), "
                f"got {cutoffs.min()}..{cutoffs.max()}"
            )
        qs = sorted({float(q) for q in quantiles})
        if not qs or qs[0] <= 0 or qs[-1] >= 1:
            raise ValueError(f"{self.name}: quantiles must lie in (0, 1), got {list(quantiles)}")
        raw = self._predict_at(series, cutoffs, h, qs)
        return tidy_quantiles(raw)

    @abstractmethod
    def _fit(self, series: Series) -> None: ...

    @abstractmethod
    def _predict_at(
        self, series: Series, origins: IntArray, h: int, quantiles: list[float]
    ) -> Quantiles: ...


def check_series(series: Series, min_points: int, who: str) -> None:
    """Reject what no model should silently fit on: too short, NaN or infinite values."""
    if len(series) < min_points:
        raise ValueError(f"{who}: needs at least {min_points} points of history, got {len(series)}")
    bad = ~np.isfinite(series.values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{who}: series has {int(bad.sum())} NaN/infinite values (first at index "
            f"{first}); fill gaps first (predictors.series.fill_gaps)"
        )


def tidy_quantiles(raw: Mapping[float, FloatArray]) -> Quantiles:
    """Sort by quantile, remove crossings, clip at 0.

    The quantile nearest the median is the anchor and is never moved: those above it are
    raised to at least the one below them, those below lowered to at most the one above.
    (A running maximum from the lowest quantile would let a too-high p10 drag the p50 up,
    and the p50 is what MAE and scale-down use.)"""
    qs = sorted(raw)
    if not qs:
        return {}
    stacked = np.stack([np.asarray(raw[q], dtype=np.float64) for q in qs])
    stacked = np.maximum(np.nan_to_num(stacked, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    anchor = min(range(len(qs)), key=lambda i: abs(qs[i] - 0.5))
    stacked[anchor:] = np.maximum.accumulate(stacked[anchor:], axis=0)
    stacked[: anchor + 1] = np.minimum.accumulate(stacked[anchor::-1], axis=0)[::-1]
    return {q: stacked[i] for i, q in enumerate(qs)}


def cutoff_windows(values: FloatArray, origins: IntArray, offsets: IntArray) -> FloatArray:
    """``values[o + offset]`` for each origin (rows) and offset (columns), with indices
    before the start clamped to the first value."""
    index = origins[:, None] + offsets[None, :]
    return np.asarray(values[np.clip(index, 0, len(values) - 1)], dtype=np.float64)
