"""How long will a job run? A regression on the job's features, with a fallback.

Used for the queue-time estimate and for scale-down (do not drain a node whose jobs will
finish soon). Durations are heavy-tailed (minutes to weeks), so the model works on
``log(duration)`` with absolute loss: its prediction is a *median* run time, and the spread
of its residuals gives the distribution around it.

Features of a :class:`~dlscaler.model.Gang`:

- shape: total GPUs, workers, GPUs per worker, priority;
- categories (integer codes learned at fit, unknown -> its own code): GPU type, queue, and
  the attributes ``framework`` and ``user`` (and ``qos`` from the bundled trace);
- history: the median log run time of earlier jobs of the same queue and of the same user
  (for training rows, of the *other* jobs of that queue/user, so a job never sees itself);
- the DLJob's optional hints, from attributes ``datasetSizeGb``, ``epochs`` and
  ``modelParameters`` (snake_case spellings too), and any other attribute that is a number
  for at least 90% of the training jobs (a trace's extra columns), as ``log1p``; missing ->
  NaN, which gradient boosting handles natively.

Untrained (or trained on fewer than ``min_jobs``), it answers the median of the same queue's
finished jobs, else of all finished jobs, else ``default_s``.

:meth:`RuntimeRegressor.remaining_s` is the median *remaining* time of a job that has
already run ``age_s``: the predicted distribution, conditioned on lasting beyond ``age_s``.
A job older than anything the distribution allows is given as much again as it has run
(the "Lindy" estimate: the longer a job has run, the longer it is likely to go on).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from dlscaler.model import Gang
from predictors.base import FloatArray

HINTS: Mapping[str, tuple[str, ...]] = {
    "dataset_size_gb": ("datasetSizeGb", "dataset_size_gb", "dataset_size"),
    "epochs": ("epochs",),
    "model_parameters": ("modelParameters", "model_parameters", "model_params"),
}
CATEGORIES: tuple[str, ...] = ("gpu_type", "queue", "framework", "user", "qos")
MIN_DURATION_S = 1.0


def _attribute(gang: Gang, keys: Sequence[str]) -> str | None:
    for key in keys:
        value = gang.attributes.get(key)
        if value not in (None, ""):
            return value
    return None


def _category(gang: Gang, name: str) -> str:
    if name == "gpu_type":
        return gang.gpu_type
    if name == "queue":
        return gang.queue
    return gang.attributes.get(name, "")


def _hint(gang: Gang, keys: Sequence[str]) -> float:
    raw = _attribute(gang, keys)
    if raw is None:
        return math.nan
    try:
        value = float(raw)
    except ValueError:
        return math.nan
    return math.log1p(value) if value >= 0 else math.nan


class RuntimeRegressor:
    def __init__(self, min_jobs: int = 50, default_s: float = 3_600.0, seed: int = 0) -> None:
        self.min_jobs = min_jobs
        self.default_s = default_s
        self.seed = seed
        self._model: Any = None
        self._codes: dict[str, dict[str, int]] = {}
        self._history: dict[str, dict[str, float]] = {}
        self._global_log_median = math.log(default_s)
        self._residuals: FloatArray = np.zeros(1)
        self._columns: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._numeric: tuple[str, ...] = ()

    @property
    def trained(self) -> bool:
        return self._model is not None

    def fit(self, finished: Iterable[Gang]) -> Self:
        """Learn from jobs whose ``duration_s`` is known; others are ignored."""
        jobs = [g for g in finished if g.duration_s is not None and g.duration_s > 0]
        self._model = None
        if not jobs:
            return self
        target = np.log(np.maximum([g.duration_s or 0.0 for g in jobs], MIN_DURATION_S))
        self._global_log_median = float(np.median(target))
        self._codes = {
            name: {value: i for i, value in enumerate(sorted({_category(g, name) for g in jobs}))}
            for name in CATEGORIES
        }
        self._numeric = _numeric_attributes(jobs)
        self._history = {name: _group_medians(jobs, target, name) for name in ("queue", "user")}
        if len(jobs) < self.min_jobs:
            return self
        from sklearn.ensemble import HistGradientBoostingRegressor

        history = np.column_stack([_leave_one_out(jobs, target, n) for n in ("queue", "user")])
        features = self._features(jobs, history=history)
        categorical = list(range(len(CATEGORIES)))
        model = HistGradientBoostingRegressor(
            loss="absolute_error",
            max_iter=100,
            learning_rate=0.1,
            min_samples_leaf=20,
            categorical_features=categorical,
            random_state=self.seed,
        )
        # A column no training job has (say, no hints at all) carries nothing and trips the
        # binning of gradient boosting; it is left out.
        self._columns = np.flatnonzero(~np.all(np.isnan(features), axis=0))
        model.fit(features[:, self._columns], target)
        self._model = model
        self._residuals = np.sort(target - model.predict(features[:, self._columns]))
        return self

    def predict_s(self, gangs: Sequence[Gang]) -> FloatArray:
        """Median run time of each gang, in seconds."""
        return np.exp(self._log_median(gangs))

    def gpu_hours(self, gangs: Sequence[Gang]) -> FloatArray:
        gpus = np.array([g.total_gpus for g in gangs], dtype=np.float64)
        return np.asarray(self.predict_s(gangs) * gpus / 3_600.0, dtype=np.float64)

    def remaining_s(self, gangs: Sequence[Gang], ages_s: Sequence[float]) -> FloatArray:
        """Median remaining run time of gangs that have run ``ages_s`` so far."""
        return self.remaining_given_median_s(self.predict_s(gangs), ages_s)

    def remaining_given_median_s(
        self, medians_s: Sequence[float] | FloatArray, ages_s: Sequence[float]
    ) -> FloatArray:
        """:meth:`remaining_s` from already predicted median run times (``predict_s``).

        A caller that estimates the same gangs again and again (a simulator at every
        decision) predicts each gang once and asks only this, which costs no model call:
        the residuals are sorted, so the runs still alive at ``age`` are a tail of them.
        """
        ages = np.maximum(np.asarray(ages_s, dtype=np.float64), 0.0)
        centre = np.log(np.maximum(np.asarray(medians_s, dtype=np.float64), 1e-300))
        residuals = self._residuals if self.trained else np.array([0.0])
        n = len(residuals)
        with np.errstate(divide="ignore"):
            # durations exp(centre + r) > age  <=>  r > log(age) - centre
            first = np.searchsorted(residuals, np.log(ages) - centre, side="right")
        alive = n - first
        lo = np.minimum(first + (alive - 1) // 2, n - 1)
        hi = np.minimum(first + alive // 2, n - 1)
        median = 0.5 * (np.exp(centre + residuals[lo]) + np.exp(centre + residuals[hi]))
        lindy = np.maximum(ages, MIN_DURATION_S)
        return np.asarray(np.where(alive > 0, median - ages, lindy), dtype=np.float64)

    # --- internals -----------------------------------------------------------------------

    def _log_median(self, gangs: Sequence[Gang]) -> FloatArray:
        if not gangs:
            return np.zeros(0)
        if self._model is not None:
            features = self._features(gangs)[:, self._columns]
            return np.asarray(self._model.predict(features), dtype=np.float64)
        queue = self._history.get("queue", {})
        return np.array([queue.get(g.queue, self._global_log_median) for g in gangs])

    def _features(self, gangs: Sequence[Gang], history: FloatArray | None = None) -> FloatArray:
        """One row per gang; ``history`` overrides the queue/user history columns (training
        rows must not see their own run time)."""
        rows = []
        for i, g in enumerate(gangs):
            row: list[float] = [
                float(self._codes[name].get(_category(g, name), len(self._codes[name])))
                for name in CATEGORIES
            ]
            if history is not None:
                row += [float(v) for v in history[i]]
            else:
                row += [
                    self._history[name].get(_category(g, name), math.nan)
                    for name in ("queue", "user")
                ]
            row += [float(g.total_gpus), float(g.workers), float(g.gpus_per_worker)]
            row.append(float(g.priority))
            row += [_hint(g, keys) for keys in HINTS.values()]
            row += [_hint(g, (name,)) for name in self._numeric]
            rows.append(row)
        return np.array(rows, dtype=np.float64)


def _group_medians(jobs: Sequence[Gang], target: FloatArray, name: str) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for g, value in zip(jobs, target, strict=True):
        groups[_category(g, name)].append(float(value))
    return {key: float(np.median(values)) for key, values in groups.items()}


def _numeric_attributes(jobs: Sequence[Gang]) -> tuple[str, ...]:
    """Other attributes that are numbers for most jobs (a trace's extra columns, such as the
    bundled trace's ``gpu_milli``): used as features too."""
    known = {key for keys in HINTS.values() for key in keys} | set(CATEGORIES)
    names = sorted({key for g in jobs for key in g.attributes} - known)
    numeric = []
    for name in names:
        values = [g.attributes.get(name, "") for g in jobs]
        parsed = sum(1 for v in values if _is_number(v))
        if parsed >= 0.9 * len(jobs):
            numeric.append(name)
    return tuple(numeric)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


EXACT_LEAVE_ONE_OUT = 200
"""Groups up to this size get the exact median without the row; in larger ones one row
barely moves the median, and the exact one would cost a sort per row."""


def _leave_one_out(jobs: Sequence[Gang], target: FloatArray, name: str) -> FloatArray:
    """For each job, the median log run time of the *other* jobs of its group (NaN alone)."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(jobs):
        members[_category(g, name)].append(i)
    out = np.full(len(jobs), math.nan)
    for rows in members.values():
        values = target[rows]
        if len(rows) == 1:
            continue
        if len(rows) > EXACT_LEAVE_ONE_OUT:
            out[rows] = np.median(values)
            continue
        for j, row in enumerate(rows):
            out[row] = np.median(np.delete(values, j))
    return out
