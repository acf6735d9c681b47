"""Jobs -> a demand :class:`~predictors.base.Series` (and its covariates).

Definition of demand used everywhere in dlscaler's forecasting: a gang *demands* its
``total_gpus`` from its ``submit_s`` until ``submit_s + duration_s``, i.e. as if it started
the moment it was submitted (running + waiting, never delayed by capacity). That is the
"concurrent GPUs if every job started at its submit time" of ``data/README.md``, and it is
what capacity should follow. A gang without a duration (still running in the controller's
view) demands until the end of the series.

``values[i]`` is the *peak* demand within step ``i`` (``[start_s + i*step_s, ... + step_s)``),
the same meaning as :class:`dlscaler.model.Forecast`'s per-step quantiles: capacity must
cover the busiest moment of the step, not its average. Intervals are half-open, so a job
that ends at ``t`` and one that starts at ``t`` never overlap.

Covariates, all known by the end of each step (time ``start_s + (i+1)*step_s``):

- ``arrived_gpus``, ``arrived_jobs``: GPUs and gangs submitted during step ``i``;
- ``gpus_age_*``: GPUs of gangs still running at the end of step ``i``, by how long they have
  been running (:data:`AGE_BUCKETS_S`). GPU demand is dominated by jobs already running and
  a job's age says much about how soon it ends (most end within minutes, a few run for
  weeks), so these are what lets a model forecast departures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from dlscaler.model import Gang
from predictors.base import FloatArray, Series

AGE_BUCKETS_S: tuple[float, ...] = (
    0.0,
    120.0,
    300.0,
    600.0,
    1_200.0,
    1_800.0,
    3_600.0,
    7_200.0,
    21_600.0,
    86_400.0,
)
"""Lower edges of the running-age buckets (2, 5, 10, 20, 30 min, 1, 2, 6 h, 1 d). Fine at
the young end because that is where the chance of ending within the hour changes fastest
(on the bundled trace ~90% of GPUs younger than 2 min are gone an hour later, ~2% of those
older than a day)."""

ARRIVED_GPUS = "arrived_gpus"
ARRIVED_JOBS = "arrived_jobs"


def age_covariate_name(lower_s: float) -> str:
    return f"gpus_age_ge_{int(lower_s)}s"


AGE_COVARIATES: tuple[str, ...] = tuple(age_covariate_name(lo) for lo in AGE_BUCKETS_S)


def demand_series(
    gangs: Iterable[Gang],
    step_s: float,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
    covariates: bool = True,
) -> Series:
    """Peak demanded GPUs per step of ``step_s`` over ``[start_s, end_s)``.

    ``start_s`` defaults to the first submission, ``end_s`` to the last finish (or the last
    submission plus one step when no gang has a duration).
    """
    if not step_s > 0:
        raise ValueError(f"step_s must be > 0, got {step_s}")
    jobs = list(gangs)
    submit = np.array([g.submit_s for g in jobs], dtype=np.float64)
    gpus = np.array([g.total_gpus for g in jobs], dtype=np.float64)
    durations = np.array(
        [math.inf if g.duration_s is None else g.duration_s for g in jobs], dtype=np.float64
    )
    if start_s is None:
        start_s = float(submit.min()) if jobs else 0.0
    if end_s is None:
        finite_ends = submit + np.where(np.isfinite(durations), durations, 0.0)
        end_s = float(finite_ends.max()) if jobs else start_s + step_s
        end_s = max(end_s, float(submit.max()) + step_s if jobs else end_s)
    if end_s <= start_s:
        raise ValueError(f"end_s ({end_s}) must be after start_s ({start_s})")
    n = math.ceil((end_s - start_s) / step_s)
    finish = submit + np.maximum(durations, 0.0)

    values = _peak_per_step(submit, finish, gpus, start_s, step_s, n)
    exog: dict[str, FloatArray] = {}
    if covariates:
        step_of_submit = np.floor((submit - start_s) / step_s)
        inside = (step_of_submit >= 0) & (step_of_submit < n)
        index = step_of_submit[inside].astype(np.int64)
        exog[ARRIVED_GPUS] = np.bincount(index, weights=gpus[inside], minlength=n).astype(
            np.float64
        )
        exog[ARRIVED_JOBS] = np.bincount(index, minlength=n).astype(np.float64)
        uppers = (*AGE_BUCKETS_S[1:], math.inf)
        for lower, upper in zip(AGE_BUCKETS_S, uppers, strict=True):
            # Running at T, aged [lower, upper): submit+lower <= T < min(finish, submit+upper)
            exog[age_covariate_name(lower)] = _level_at_step_ends(
                submit + lower, np.minimum(finish, submit + upper), gpus, start_s, step_s, n
            )
    return Series(values, step_s, start_s, exog)


def _peak_per_step(
    begin: FloatArray, end: FloatArray, weight: FloatArray, start_s: float, step_s: float, n: int
) -> FloatArray:
    """Max over each step of sum(weight of intervals [begin, end) covering t)."""
    times = np.concatenate([begin, end])
    deltas = np.concatenate([weight, -weight])
    keep = np.isfinite(times) & (deltas != 0)
    times, deltas = times[keep], deltas[keep]
    # At equal times, ends (negative) before starts: half-open intervals do not overlap.
    if times.size == 0:  # no jobs, or none with GPUs and a start: no demand
        return np.zeros(n)
    order = np.lexsort((deltas, times))
    times, deltas = times[order], deltas[order]
    level = np.cumsum(deltas)
    step_starts = start_s + step_s * np.arange(n)
    # Level at each step's start: every event at or before it has happened.
    last = np.searchsorted(times, step_starts, side="right") - 1
    values = np.where(last >= 0, level[np.maximum(last, 0)], 0.0)
    # Then the level after each event inside a step can only raise that step's peak.
    step_of_event = np.floor((times - start_s) / step_s)
    inside = (step_of_event >= 0) & (step_of_event < n)
    np.maximum.at(values, step_of_event[inside].astype(np.int64), level[inside])
    return np.maximum(values, 0.0)


def _level_at_step_ends(
    begin: FloatArray, end: FloatArray, weight: FloatArray, start_s: float, step_s: float, n: int
) -> FloatArray:
    """sum(weight of intervals [begin, end) covering T_i) at T_i = start_s + (i+1)*step_s."""
    alive = end > begin
    # T_i >= begin  <=>  i >= (begin - start_s)/step_s - 1; likewise for end.
    first = np.ceil((begin[alive] - start_s) / step_s - 1.0)
    stop = np.ceil((end[alive] - start_s) / step_s - 1.0)
    first = np.clip(np.nan_to_num(first, posinf=n), 0, n).astype(np.int64)
    stop = np.clip(np.nan_to_num(stop, posinf=n), 0, n).astype(np.int64)
    change = np.zeros(n + 1)
    np.add.at(change, first, weight[alive])
    np.add.at(change, stop, -weight[alive])
    return np.cumsum(change)[:n]


def fill_gaps(series: Series) -> Series:
    """Replace NaN/infinite values (missed scrapes) by the last finite one before them
    (0 at the start); negative values become 0. Covariates get the same treatment."""

    def forward_fill(values: FloatArray) -> FloatArray:
        finite = np.isfinite(values)
        if finite.all():
            return np.maximum(values, 0.0)
        index = np.where(finite, np.arange(len(values)), 0)
        np.maximum.accumulate(index, out=index)
        filled = np.where(finite[index], values[index], 0.0)
        return np.maximum(filled, 0.0)

    return Series(
        forward_fill(series.values),
        series.step_s,
        series.start_s,
        {name: forward_fill(column) for name, column in series.exog.items()},
    )
