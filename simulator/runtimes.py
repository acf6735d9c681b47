"""Expected ends of running gangs, as a controller would estimate them.

The simulator knows every job's true run time (the trace's ``duration_s``); a controller
does not. So, for every policy but ``oracle``, a running gang's ``expected_end_s`` is
``started + age + remaining`` from a :class:`predictors.runtime.RuntimeRegressor` trained
online on the jobs that have *finished* by the simulated ``now``, with their run time
measured as end minus start, exactly what a controller sees of a finished DLJob. Before
enough jobs have finished, the regressor's documented fallback answers (the median of the
finished jobs of the same queue, else of all, else its ``default_s``).

Cost, which matters because a tuning study replays a trace hundreds of times:

- Refits follow a schedule, never a decision: each time the number of finished jobs has
  grown fourfold while the training window fills up, then every ``refit_every_s`` of
  simulated time (with enough new jobs). The window is the latest ``max_training_jobs``
  (a larger one measured no better on the bundled trace). Fits run on one thread:
  scikit-learn's OpenMP threads cost more than they save on a thousand rows, and on a
  loaded machine far more.
- A model call costs milliseconds whatever the batch size, so the predicted median of a
  gang is cached by the features the regressor reads (jobs of one shape share it), and a
  refit predicts every shape seen so far again in one call; the remaining time at an age
  is then arithmetic on those medians
  (:meth:`~predictors.runtime.RuntimeRegressor.remaining_given_median_s`).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from dlscaler.model import Gang
from predictors.runtime import RuntimeRegressor

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class RefitSchedule:
    first_fit_jobs: int = 8
    """Fit first once this many jobs have finished..."""
    growth: int = 4
    """...then each time their number has grown this many times, until the window is full."""
    max_training_jobs: int = 1_000
    """Train on the latest this many finished jobs."""
    refit_every_s: float = 14 * 86_400.0
    """Once the window is full: refit this often (simulated time)..."""
    min_new_jobs: int = 200
    """...if at least this many jobs finished since the last fit."""


def _feature_key(gang: Gang) -> Hashable:
    """Everything about a gang the regressor reads (not its id, submit time or run time)."""
    return (
        gang.workers,
        gang.gpus_per_worker,
        gang.gpu_type,
        gang.priority,
        gang.queue,
        tuple(sorted(gang.attributes.items())),
    )


_THREADPOOLS: list[Any] = []


def _one_thread() -> Any:
    """A context in which scikit-learn's native (OpenMP) code runs on one thread. The
    controller that finds the loaded libraries is made once: that search costs milliseconds."""
    if not _THREADPOOLS:
        # The OpenMP runtime is found only once loaded: scikit-learn's model loads it.
        import sklearn.ensemble  # noqa: F401
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

        _THREADPOOLS.append(ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=1, user_api="openmp")


class RuntimeEstimates:
    """A runtime regressor fed with finished jobs only, refitted on a schedule."""

    def __init__(
        self,
        schedule: RefitSchedule | None = None,
        *,
        regressor_factory: Callable[[], RuntimeRegressor] = RuntimeRegressor,
    ) -> None:
        self.schedule = schedule or RefitSchedule()
        self._factory = regressor_factory
        self.regressor = regressor_factory()
        self._finished: deque[tuple[Gang, float]] = deque(maxlen=self.schedule.max_training_jobs)
        """(gang, measured run time) of the latest finished jobs."""
        self.finished_jobs = 0
        self._fitted_jobs = 0
        self._fitted_s = -math.inf
        self._medians: dict[Hashable, float] = {}
        self._shapes: dict[Hashable, Gang] = {}
        """One gang of each shape seen, to predict them all again in one call at a refit."""
        self.fits = 0
        self.fit_wall_s = 0.0
        """Wall-clock seconds spent fitting (for benchmarks)."""
        self._key_of: dict[str, Hashable] = {}
        """Shape of each job asked about and not finished yet (it is asked again and again)."""

    def record_finished(self, gang: Gang, started_s: float, ended_s: float) -> None:
        """A job finished: its measured run time becomes training data (at the next fit)."""
        self._finished.append((gang, max(0.0, ended_s - started_s)))
        self._key_of.pop(gang.job_id, None)
        self.finished_jobs += 1

    def maybe_refit(self, now_s: float) -> bool:
        """Refit if the schedule says so; True when the model changed."""
        s = self.schedule
        new = self.finished_jobs - self._fitted_jobs
        if new <= 0:
            return False
        if self._fitted_jobs < s.max_training_jobs:
            grown = min(s.growth * self._fitted_jobs, s.max_training_jobs)
            due = self.finished_jobs >= max(s.first_fit_jobs, grown)
        else:
            due = new >= s.min_new_jobs and now_s - self._fitted_s >= s.refit_every_s
        if not due:
            return False
        regressor = self._factory()
        jobs = [replace(gang, duration_s=run_s) for gang, run_s in self._finished]
        started = time.perf_counter()
        with _one_thread():
            regressor.fit(jobs)
        self.fit_wall_s += time.perf_counter() - started
        self.regressor = regressor
        self._fitted_jobs = self.finished_jobs
        self._fitted_s = now_s
        self._medians.clear()
        self._predict(self._shapes)
        self.fits += 1
        return True

    def medians_s(self, gangs: Sequence[Gang]) -> FloatArray:
        """The regressor's median run time of each gang (one model call for the new shapes)."""
        key_of = self._key_of
        keys = []
        for g in gangs:
            key = key_of.get(g.job_id)
            if key is None:
                key = key_of[g.job_id] = _feature_key(g)
            keys.append(key)
        missing: dict[Hashable, Gang] = {}
        for key, gang in zip(keys, gangs, strict=True):
            if key not in self._medians and key not in missing:
                # Nothing of the job's true run time goes in, whatever the caller held.
                missing[key] = replace(gang, duration_s=None)
        if missing:
            self._shapes.update(missing)
            self._predict(missing)
        return np.array([self._medians[k] for k in keys], dtype=np.float64)

    def _predict(self, shapes: dict[Hashable, Gang]) -> None:
        if not shapes:
            return
        with _one_thread():
            predicted = self.regressor.predict_s(list(shapes.values()))
        self._medians.update(zip(shapes, (float(p) for p in predicted), strict=True))

    def remaining_s(self, gangs: Sequence[Gang], ages_s: Sequence[float]) -> FloatArray:
        """Median remaining run time of gangs that have run ``ages_s`` so far."""
        if not gangs:
            return np.zeros(0)
        return self.regressor.remaining_given_median_s(self.medians_s(gangs), ages_s)
