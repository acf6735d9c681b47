"""Features for the regression models, computed at forecast origins without looking ahead.

For a cutoff ``o`` (``series.values[:o]`` observed) every feature uses only indices below
``o``. All of them are vectorised over many cutoffs at once: the backtest asks for
thousands.

Groups (names in :func:`feature_names`):

- lags: the last value and its change over 1, 3 and 12 steps;
- rolling windows: last value minus the mean over 1 h, 6 h, 1 d; mean absolute one-step
  change over 6 h and 1 d (how jumpy demand is right now);
- calendar: time of day and day of week (sin/cos), from the series' absolute ``start_s``;
- covariates, when the series has them (see :mod:`predictors.series`): GPUs of running jobs
  by age bucket, and GPUs that arrived over the last 15 min, 1 h and 3 h.

:func:`spread_features` is the small subset the quantile (spread) model uses.
"""

from __future__ import annotations

import numpy as np

from predictors.base import DAY_S, WEEK_S, FloatArray, IntArray, Series, cutoff_windows
from predictors.series import AGE_COVARIATES, ARRIVED_GPUS

LAG_STEPS = (1, 3, 12)
MEAN_WINDOWS_S = (3_600.0, 21_600.0, DAY_S)
JUMP_WINDOWS_S = (21_600.0, DAY_S)
ARRIVAL_WINDOWS_S = (900.0, 3_600.0, 10_800.0)
YOUNG_BUCKETS = 6
"""Age buckets (from the youngest) summed into the spread model's "young GPUs" (< 1 h)."""


def _trailing_sum(column: FloatArray, origins: IntArray, width: int) -> FloatArray:
    """Sum of ``column[o - width : o]`` for each cutoff (fewer points near the start)."""
    cumulative = np.concatenate([[0.0], np.cumsum(column)])
    return np.asarray(
        cumulative[origins] - cumulative[np.maximum(origins - width, 0)], dtype=np.float64
    )


def _trailing_mean(column: FloatArray, origins: IntArray, width: int) -> FloatArray:
    count = np.minimum(origins, width).astype(np.float64)
    return _trailing_sum(column, origins, width) / np.maximum(count, 1.0)


def _jumps(values: FloatArray) -> FloatArray:
    """|y[i] - y[i-1]| (0 for the first point)."""
    return np.abs(np.diff(values, prepend=values[:1]))


def _local(series: Series, origins: IntArray) -> tuple[Series, IntArray]:
    """Cut the history no feature looks at, so forecasting from the end of a long series
    costs the same as from a short one."""
    lookback = series.steps(DAY_S) + max(LAG_STEPS) + 2
    first = max(0, int(origins.min()) - lookback)
    if first == 0:
        return series, origins
    return series.tail(len(series) - first), origins - first


def feature_names(series: Series) -> list[str]:
    names = ["level"]
    names += [f"change_{k}" for k in LAG_STEPS]
    names += [f"minus_mean_{int(w)}s" for w in MEAN_WINDOWS_S]
    names += [f"jumps_{int(w)}s" for w in JUMP_WINDOWS_S]
    names += ["day_sin", "day_cos", "week_sin", "week_cos"]
    names += [name for name in AGE_COVARIATES if name in series.exog]
    if ARRIVED_GPUS in series.exog:
        names += [f"arrived_{int(w)}s" for w in ARRIVAL_WINDOWS_S]
    return names


def build_features(series: Series, origins: IntArray) -> FloatArray:
    """One row per cutoff, columns as :func:`feature_names`."""
    series, origins = _local(series, origins)
    y = series.values
    last = y[origins - 1]
    columns: list[FloatArray] = [last]
    for k in LAG_STEPS:
        columns.append(last - cutoff_windows(y, origins, np.array([-1 - k]))[:, 0])
    for window_s in MEAN_WINDOWS_S:
        columns.append(last - _trailing_mean(y, origins, series.steps(window_s)))
    jumps = _jumps(y)
    for window_s in JUMP_WINDOWS_S:
        columns.append(_trailing_mean(jumps, origins, series.steps(window_s)))
    # The forecast is made at the end of step o-1, i.e. at start_s + o * step_s.
    now_s = series.start_s + origins * series.step_s
    for period_s in (DAY_S, WEEK_S):
        phase = 2 * np.pi * np.mod(now_s, period_s) / period_s
        columns += [np.sin(phase), np.cos(phase)]
    columns += [series.exog[name][origins - 1] for name in AGE_COVARIATES if name in series.exog]
    if ARRIVED_GPUS in series.exog:
        arrived = series.exog[ARRIVED_GPUS]
        columns += [_trailing_sum(arrived, origins, series.steps(w)) for w in ARRIVAL_WINDOWS_S]
    return np.column_stack(columns)


def spread_features(series: Series, origins: IntArray) -> FloatArray:
    """What makes the next hour uncertain: how jumpy demand has been, how many GPUs belong
    to young jobs (which end soon), how many just arrived (arrivals come in bursts)."""
    series, origins = _local(series, origins)
    columns = [_trailing_mean(_jumps(series.values), origins, series.steps(21_600.0))]
    young = [series.exog[name] for name in AGE_COVARIATES[:YOUNG_BUCKETS] if name in series.exog]
    if young:
        columns.append(np.sum([column[origins - 1] for column in young], axis=0))
    if ARRIVED_GPUS in series.exog:
        columns.append(_trailing_sum(series.exog[ARRIVED_GPUS], origins, series.steps(3_600.0)))
    return np.column_stack(columns)
