"""``dlscaler tune`` when simulations raise: only completed trials count toward ``trials``,
failed ones are replaced up to ``max_failures`` a run, and the run says what failed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import optuna

from dlscaler.config import PolicyConfig, PoolModel
from dlscaler.trace import Trace
from simulator.cli import failure_report
from simulator.tune import evaluate, run_study

TraceOf = Callable[..., Trace]
PoolOf = Callable[..., PoolModel]


class LongTimeoutsCrash:
    """The real simulation, except that it raises for idle timeouts of half an hour or
    more (as a simulator bug reached only by part of the search space would)."""

    def __init__(self) -> None:
        self.crashed = 0

    def __call__(
        self, trace: Trace, pools: Sequence[PoolModel], cfg: PolicyConfig, seed: int
    ) -> tuple[float, float]:
        if cfg.idle_timeout_s >= 1800:
            self.crashed += 1
            raise RuntimeError(f"simulated crash at idle timeout {cfg.idle_timeout_s:.0f} s")
        return evaluate(trace, pools, cfg, seed)


def states(storage: str) -> list[optuna.trial.TrialState]:
    return [t.state for t in optuna.load_study(study_name="s", storage=storage).trials]


def test_a_config_every_simulation_rejects_stops_at_max_failures_with_the_error(
    tmp_path: Path, small: tuple[Trace, list[PoolModel]]
) -> None:
    trace, pools = small
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # a queue ordering the config parser would refuse: every simulation raises on it
    base = PolicyConfig(policy="reactive", queue_ordering="no-such-ordering")
    run = run_study(
        trace, pools, base, trials=3, storage=storage, study_name="s", workers=1,
        max_failures=4,
    )  # fmt: skip
    assert states(storage) == [optuna.trial.TrialState.FAIL] * 4
    assert (run.completed, run.front, run.chosen) == (0, [], None)
    assert [f.number for f in run.failed] == [0, 1, 2, 3]
    assert run.failed[0].error.startswith("ValueError: queue ordering 'no-such-ordering'")
    # the defaults raised once: they would again, so they are not queued a second time
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.number for t in study.trials if "fixed_params" in t.system_attrs] == [0]

    lines = failure_report(run, trials=3, max_failures=4)
    assert lines[0].startswith(
        "4 trial(s) failed in this run; first: trial 0: ValueError: queue ordering "
        "'no-such-ordering' has no static order"
    )
    assert (
        "stopped after 4 failed trial(s) (--max-failures 4): 0 of 3 trials completed" in (lines[1])
    )


def test_failed_trials_are_replaced_until_the_target_has_completed(
    tmp_path: Path, small: tuple[Trace, list[PoolModel]]
) -> None:
    trace, pools = small
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    crashing = LongTimeoutsCrash()
    progress: list[tuple[int, int, int]] = []
    run = run_study(
        trace, pools, PolicyConfig(policy="reactive"), trials=6, storage=storage,
        study_name="s", workers=1, seed=0, evaluate_fn=crashing,
        on_progress=lambda *counts: progress.append(counts),
    )  # fmt: skip
    all_states = states(storage)
    failed = all_states.count(optuna.trial.TrialState.FAIL)
    assert crashing.crashed == failed > 0
    assert all_states.count(optuna.trial.TrialState.COMPLETE) == 6 == run.completed
    assert len(run.failed) == failed and all("simulated crash" in f.error for f in run.failed)
    # progress counts completed trials only, failures apart
    assert progress[-1] == (6, 6, failed)
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)
    assert len(progress) == 6 + failed
    lines = failure_report(run, trials=6, max_failures=10)
    assert lines[0].startswith(f"{failed} trial(s) failed in this run; first: trial ")
    assert "replaced by new ones" in lines[1]


def test_parallel_workers_replace_failures_and_stop_near_the_cap(
    tmp_path: Path, small: tuple[Trace, list[PoolModel]]
) -> None:
    trace, pools = small
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    run = run_study(
        trace, pools, PolicyConfig(policy="reactive"), trials=8, storage=storage,
        study_name="s", workers=2, seed=2, evaluate_fn=LongTimeoutsCrash(),
    )  # fmt: skip
    assert run.completed == 8 and run.failed
    # every simulation fails: two workers stop once the cap is reached (each may have
    # started one more trial before it saw the other's failure)
    run = run_study(
        trace, pools, PolicyConfig(policy="reactive", queue_ordering="no-such-ordering"),
        trials=4, storage=f"sqlite:///{tmp_path / 'other.db'}", study_name="s", workers=2,
        max_failures=3,
    )  # fmt: skip
    assert run.completed == 0 and 3 <= len(run.failed) <= 4
