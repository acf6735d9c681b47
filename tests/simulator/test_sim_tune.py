"""``dlscaler tune``: a persisted optuna study that resumes, runs trials in parallel
processes, starts from the defaults, and chooses a Pareto point that simulate reads back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import yaml
from typer.testing import CliRunner

from dlscaler.cli import app
from dlscaler.config import PolicyConfig, PoolModel, parse_policy_config
from dlscaler.trace import Trace
from simulator.tune import TrialResult, choose, evaluate, run_study

TraceOf = Callable[..., Trace]
PoolOf = Callable[..., PoolModel]


def completed(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=storage)
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_study_resumes_and_keeps_earlier_trials(
    tmp_path: Path, small: tuple[Trace, list[PoolModel]]
) -> None:
    trace, pools = small
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    base = PolicyConfig(policy="predictive")
    kw: dict[str, Any] = {"storage": storage, "study_name": "s", "workers": 2, "seed": 3}
    run_study(trace, pools, base, trials=4, **kw)
    first = {t.number: (t.params, t.values) for t in completed(storage, "s")}
    assert len(first) == 4
    # interrupted here; the same command asked for 6 runs only the 2 missing
    run = run_study(trace, pools, base, trials=6, **kw)
    after = completed(storage, "s")
    assert len(after) == 6
    for t in after:
        if t.number in first:
            assert (t.params, t.values) == first[t.number]
    assert run.chosen in run.front
    # and a third call with nothing to do runs nothing
    run_study(trace, pools, base, trials=6, **kw)
    assert len(completed(storage, "s")) == 6


def test_first_trials_are_the_defaults_and_the_cheap_start(
    tmp_path: Path, small: tuple[Trace, list[PoolModel]]
) -> None:
    trace, pools = small
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    base = PolicyConfig(policy="predictive")
    run_study(trace, pools, base, trials=2, storage=storage, study_name="s", workers=1)
    by_number = {t.number: t for t in completed(storage, "s")}
    d = base.predictive
    assert by_number[0].params["arrival_quantile"] == d.arrival_quantile
    assert by_number[0].params["quantile"] == d.quantile
    assert by_number[1].params["arrival_quantile"] == 0.0
    assert by_number[1].params["arrival_budget"] == 0.0
    # trial 0's objectives are exactly those of a plain run with the defaults
    assert tuple(by_number[0].values) == evaluate(trace, pools, base, seed=0)


def tr(number: int, cost: float, wait: float) -> TrialResult:
    return TrialResult(number, cost, wait, PolicyConfig(policy="predictive"))


def test_choose_with_a_wait_limit_takes_the_cheapest_within_it() -> None:
    front = [tr(0, 100.0, 300.0), tr(3, 110.0, 120.0), tr(5, 150.0, 0.0)]
    assert choose(front, front, max_wait_p95_s=200.0).number == 3
    assert choose(front, front, max_wait_p95_s=0.0).number == 5
    # nothing within the limit: fall back to the knee
    assert choose(front, front, max_wait_p95_s=-1.0).number in {0, 3, 5}


def test_choose_knee_trades_cost_against_wait_relative_to_the_defaults() -> None:
    # defaults: 100 USD, 300 s. Trial 3 cuts the wait by 60% for 10% more: chosen.
    # Trial 5 removes the wait but doubles the cost: not worth it.
    front = [tr(0, 100.0, 300.0), tr(3, 110.0, 120.0), tr(5, 200.0, 0.0)]
    assert choose(front, front).number == 3
    # waits under a minute count as a minute: 30 s does not buy 40% more cost
    front = [tr(0, 100.0, 60.0), tr(1, 140.0, 30.0)]
    assert choose(front, front).number == 0


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_tune_command_writes_a_config_simulate_reads_back(
    tmp_path: Path, small: tuple[Trace, list[PoolModel]]
) -> None:
    trace, _ = small
    csv = tmp_path / "trace.csv"
    lines = ["job_id,submit_s,duration_s,num_gpus"] + [
        f"{j.job_id},{j.submit_s:g},{j.duration_s:g},{j.total_gpus}" for j in trace.jobs
    ]
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "tune-out"
    result = run_cli(
        "tune", "--trace", str(csv), "--policy", "predictive", "--trials", "3",
        "--workers", "1", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("tuned.yaml", "pareto.json", "pareto.png", "study.db"):
        assert (out / name).exists(), name
    doc = yaml.safe_load((out / "tuned.yaml").read_text())
    tuned = parse_policy_config(doc, source="tuned.yaml")
    assert tuned.policy == "predictive"
    sim = run_cli(
        "simulate", "--trace", str(csv), "--policy", "predictive",
        "--config", str(out / "tuned.yaml"), "--out", str(tmp_path / "sim"), "--no-plot",
    )  # fmt: skip
    assert sim.exit_code == 0, sim.output


def test_a_study_from_before_a_parameter_existed_still_resumes(
    tmp_path: Path, small: tuple[Trace, list[PoolModel]]
) -> None:
    """Trials recorded before ``arrival_quantile`` (and later parameters) existed ran with
    their defaults; resuming such a study must read them back so, not fail at the end."""
    from optuna.distributions import FloatDistribution, IntDistribution

    trace, pools = small
    storage = f"sqlite:///{tmp_path / 'old.db'}"
    study = optuna.create_study(
        study_name="s", storage=storage, directions=["minimize", "minimize"]
    )
    params = {"idle_timeout_s": 600, "quantile": 0.9, "hysteresis_nodes": 1}
    dists = {
        "idle_timeout_s": IntDistribution(0, 3600, step=60),
        "quantile": FloatDistribution(0.5, 0.99),
        "hysteresis_nodes": IntDistribution(0, 3),
    }
    study.add_trial(
        optuna.trial.create_trial(params=params, distributions=dists, values=[1.0, 0.0])
    )
    base = PolicyConfig(policy="predictive")
    run = run_study(trace, pools, base, trials=2, storage=storage, study_name="s", workers=1)
    old = next(r for r in run.front if r.number == 0)
    assert old.config.predictive.arrival_quantile == base.predictive.arrival_quantile
