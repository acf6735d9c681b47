"""Who is still running: survivors of the GPUs running at a cut-off, read from the covariates.

A series built by :func:`predictors.series.demand_series` carries, at the end of every step,
the GPUs of running gangs by age bucket and the GPUs that arrived in the step. From those
two, without any job list, one can tell how many of the GPUs running at time ``T`` are still
running at ``T + tau``: they are exactly the GPUs running at ``T + tau`` that are at least
``tau`` old. Buckets wholly at or above ``tau`` count in full, those wholly below not at all;
the one bucket that straddles ``tau`` is split by *when* its GPUs arrived (the arrival
covariate says how many arrived before ``T`` and how many after, within the bucket's age
range), which is exact for a single burst of arrivals, unlike an even spread of ages.

:func:`fit_survival` turns those observed survivors into a survival table: for each lag
``m`` and age bucket ``a``, the share of the GPUs in bucket ``a`` at a cut-off that are still
running ``m`` steps later, fitted by bounded least squares over past cut-offs (a GPU
survives with a probability between 0 and 1, and never more at a longer lag).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from predictors.base import FloatArray, IntArray, Series
from predictors.series import AGE_BUCKETS_S, AGE_COVARIATES, ARRIVED_GPUS

_LOWER_S = np.array(AGE_BUCKETS_S)
_UPPER_S = np.array([*AGE_BUCKETS_S[1:], math.inf])


@dataclass(frozen=True, eq=False)
class RunningState:
    """The covariates the structural view needs, as arrays.

    ``ages[i, a]``: GPUs running at the end of step ``i`` in age bucket ``a``;
    ``arrived_before[j]``: GPUs submitted before step ``j`` began (``j`` from 0 to ``n``).
    """

    ages: FloatArray
    arrived_before: FloatArray
    step_s: float

    @classmethod
    def of(cls, series: Series, who: str) -> RunningState:
        missing = [name for name in (*AGE_COVARIATES, ARRIVED_GPUS) if name not in series.exog]
        if missing:
            missing_ages = [name for name in missing if name in AGE_COVARIATES]
            named = [name for name in missing if name not in AGE_COVARIATES]
            if len(missing_ages) == len(AGE_COVARIATES):
                named.insert(0, "gpus_age_ge_* (running GPUs by age)")
            else:
                named[:0] = missing_ages
            raise ValueError(
                f"{who}: the series lacks the covariates {', '.join(named)}; build it from the "
                "gangs with predictors.series.demand_series(gangs, step_s), or use a model "
                "that needs only the demand"
            )
        ages = np.column_stack([series.exog[name] for name in AGE_COVARIATES])
        arrived = np.concatenate([[0.0], np.cumsum(series.exog[ARRIVED_GPUS])])
        return cls(ages, arrived, series.step_s)

    def running(self, origins: IntArray) -> FloatArray:
        """GPUs by age bucket at each cut-off (the end of step ``o - 1``), one row each."""
        return np.asarray(self.ages[origins - 1], dtype=np.float64)

    def survivors(self, origins: IntArray, lag: int) -> FloatArray:
        """GPUs running at the cut-off ``o`` (end of step ``o - 1``) still running ``lag``
        steps later. Needs ``o - 1 + lag`` observed."""
        tau_s = lag * self.step_s
        later = self.ages[origins - 1 + lag]
        whole = tau_s <= _LOWER_S
        out = later[:, whole].sum(axis=1)
        for bucket in np.flatnonzero((tau_s > _LOWER_S) & (tau_s < _UPPER_S)):
            stayed = 1.0 - self._share_arrived_after(origins, lag, int(bucket))
            out = out + np.asarray(later[:, bucket], dtype=np.float64) * stayed
        return np.asarray(out, dtype=np.float64)

    def _share_arrived_after(self, origins: IntArray, lag: int, bucket: int) -> FloatArray:
        """Of the GPUs in ``bucket`` at ``lag`` steps after each cut-off, the share submitted
        after the cut-off, from the arrivals in the bucket's age range on either side of it."""
        lower, upper = _LOWER_S[bucket], _UPPER_S[bucket]
        now = (origins + lag).astype(np.float64)  # in steps from the series start
        youngest = self._arrived_by(now - lower / self.step_s)
        oldest = 0.0 if math.isinf(upper) else self._arrived_by(now - upper / self.step_s)
        cutoff = self._arrived_by(origins.astype(np.float64))
        total = youngest - oldest
        even = 0.0 if math.isinf(upper) else (lag * self.step_s - lower) / (upper - lower)
        share = np.divide(youngest - cutoff, total, out=np.full_like(total, even), where=total > 0)
        return np.clip(share, 0.0, 1.0)

    def _arrived_by(self, steps: FloatArray) -> FloatArray:
        """GPUs submitted before a time given in steps (linear within a step)."""
        cumulative = self.arrived_before
        at = np.clip(steps, 0.0, len(cumulative) - 1.0)
        whole = np.floor(at).astype(np.int64)
        after = np.minimum(whole + 1, len(cumulative) - 1)
        part = at - whole
        return np.asarray(cumulative[whole] * (1 - part) + cumulative[after] * part)


def fit_survival(state: RunningState, first: int, end: int, lags: int) -> FloatArray:
    """Survival table ``(lags, buckets)``: row ``m`` is, per age bucket, the share of GPUs at
    a cut-off still running ``m`` steps later (row 0 is all ones), fitted on the cut-offs in
    ``[first, end]`` whose ``m`` later steps are observed."""
    from scipy.optimize import lsq_linear  # type: ignore[import-untyped]

    buckets = state.ages.shape[1]
    table = np.ones((lags, buckets))
    for lag in range(1, lags):
        origins = np.arange(max(first, 1), end - lag + 1)
        if len(origins) < buckets:
            table[lag] = table[lag - 1]
            continue
        running = state.running(origins)
        target = state.survivors(origins, lag)
        # Least squares through the 10x10 normal equations: the same minimiser as on the
        # thousands of rows, for a hundredth of the time. The tiny ridge keeps the
        # factorisation defined when a bucket was always empty (its share stays unused).
        gram = running.T @ running
        gram += np.eye(buckets) * (1e-9 * max(np.trace(gram), 1.0))
        upper = np.linalg.cholesky(gram).T
        rhs = np.linalg.solve(upper.T, running.T @ target)
        table[lag] = lsq_linear(upper, rhs, bounds=(0.0, 1.0), method="bvls").x
    # A GPU still running after m + 1 steps was running after m.
    return np.asarray(np.minimum.accumulate(table, axis=0), dtype=np.float64)
