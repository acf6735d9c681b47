"""Running gangs' expected ends in the simulator come from a runtime regression that has
seen only jobs finished by then: no unfinished job's run time reaches it, and no running
gang's true run time reaches the policy (the oracle excepted)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pytest

from dlscaler.config import DEFAULT_POOL, PolicyConfig
from dlscaler.model import Gang
from dlscaler.trace import Trace, parse_trace
from predictors.base import FloatArray
from predictors.runtime import RuntimeRegressor
from simulator.runner import SimOptions, Simulation
from simulator.runtimes import RuntimeEstimates
from simulator.synth import SynthSpec, generate, to_csv

Fits = list[tuple[float, list[Gang]]]


class Clock:
    def __init__(self) -> None:
        self.now: Callable[[], float] = lambda: 0.0


class RecordingRegressor(RuntimeRegressor):
    """The real regressor, keeping what it was given and when (on the simulated clock)."""

    def __init__(self, clock: Clock, fits: Fits) -> None:
        super().__init__()
        self.clock = clock
        self.fits = fits
        self.asked: list[Gang] = []

    def fit(self, finished: Iterable[Gang]) -> RecordingRegressor:
        jobs = list(finished)
        self.fits.append((self.clock.now(), jobs))
        super().fit(jobs)
        return self

    def predict_s(self, gangs: Sequence[Gang]) -> FloatArray:
        self.asked.extend(gangs)
        return super().predict_s(gangs)


class WatchedSimulation(Simulation):
    """Keeps, at each decision, the running gangs the policy is shown."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.shown: list[tuple[float, list[tuple[str, float, float | None, float | None]]]] = []

    def _decide(self, now: float) -> None:
        self._estimate_ends(now)
        self.shown.append(
            (
                now,
                [
                    (r.gang.job_id, r.started_s, r.expected_end_s, r.gang.duration_s)
                    for r, _ in self.running.values()
                ],
            )
        )
        super()._decide(now)


def _trace() -> Trace:
    spec = SynthSpec(jobs=1200, days=3.0, seed=5, median_duration_s=900)
    return parse_trace(to_csv(generate(spec)).splitlines(), source="synthetic")


def _run(policy: str) -> tuple[WatchedSimulation, Fits, list[RecordingRegressor]]:
    clock = Clock()
    fits: Fits = []
    regressors: list[RecordingRegressor] = []

    def factory() -> RecordingRegressor:
        regressors.append(RecordingRegressor(clock, fits))
        return regressors[-1]

    sim = WatchedSimulation(
        _trace(),
        [DEFAULT_POOL],
        PolicyConfig(policy=policy),
        options=SimOptions(seed=3),
        runtimes=RuntimeEstimates(regressor_factory=factory),
    )
    clock.now = lambda: sim.engine.now_s
    sim.run()
    return sim, fits, regressors


def test_the_regressor_is_trained_only_on_jobs_finished_by_then() -> None:
    sim, fits, _ = _run("reactive")
    assert len(fits) >= 5  # the schedule refits as jobs finish (otherwise this proves little)
    assert max(len(jobs) for _, jobs in fits) >= 1000
    for now, jobs in fits:
        for gang in jobs:
            record = sim.records[gang.job_id]
            assert record.end_s is not None and record.end_s <= now, (gang.job_id, now)
            assert record.start_s is not None
            # The run time it learns is the one measured at the finish, end minus start.
            assert gang.duration_s == record.end_s - record.start_s
    # Every later fit knows more: the finished jobs only accumulate.
    sizes = [len(jobs) for _, jobs in fits]
    assert sizes == sorted(sizes)


def test_no_running_gang_s_run_time_reaches_the_regressor_or_the_policy() -> None:
    sim, _, regressors = _run("reactive")
    asked = [g for r in regressors for g in r.asked]
    assert asked
    assert all(g.duration_s is None for g in asked)
    seen = 0
    for now, running in sim.shown:
        for job_id, started_s, expected_end_s, duration_s in running:
            assert duration_s is None, job_id
            # Every running gang has an estimate, and none is already in the past.
            assert expected_end_s is not None and expected_end_s > now, (job_id, now)
            assert started_s <= now
            seen += 1
    assert seen > 1000


def test_before_any_job_finishes_the_documented_fallback_applies() -> None:
    sim, fits, _ = _run("reactive")
    first_fit_s = fits[0][0]
    early = [(now, running) for now, running in sim.shown if now < first_fit_s and running]
    assert early
    default_s = RuntimeRegressor().default_s
    young = old = 0
    for now, running in early:
        for _, started_s, expected_end_s, _ in running:
            assert expected_end_s is not None
            if now - started_s < default_s:
                # An untrained regressor's median is its default_s (one hour), whatever the job.
                assert expected_end_s == pytest.approx(started_s + default_s)
                young += 1
            else:
                # Past it, a job is given as long again as it has run (the Lindy estimate).
                assert expected_end_s > started_s + default_s
                old += 1
    assert young and old


def test_the_oracle_keeps_the_true_end() -> None:
    sim, fits, _ = _run("oracle")
    assert fits == []
    assert sim.runtimes is None
    for _, running in sim.shown[:200]:
        for job_id, started_s, expected_end_s, duration_s in running:
            assert duration_s is not None
            assert expected_end_s == started_s + duration_s, job_id


def test_estimates_change_nothing_for_a_policy_that_does_not_read_them() -> None:
    """So they are made by default only for ``predictive``: the others get the same run."""
    runs = []
    for estimate in (True, False):
        sim = Simulation(
            _trace(),
            [DEFAULT_POOL],
            PolicyConfig(policy="reactive"),
            options=SimOptions(seed=3, runtime_estimates=estimate, keep_reasons=100_000),
        )
        result = sim.run()
        assert (sim.runtimes is not None) is estimate
        runs.append(
            (
                result.reasons,
                result.timeline.provisioned_gpus,
                [(j.start_s, j.end_s, j.pool) for j in result.jobs],
            )
        )
    assert runs[0] == runs[1]
    default = Simulation(_trace(), [DEFAULT_POOL], PolicyConfig(policy="predictive"))
    assert default.runtimes is not None
    assert Simulation(_trace(), [DEFAULT_POOL], PolicyConfig(policy="reactive")).runtimes is None
