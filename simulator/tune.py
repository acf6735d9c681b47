"""Search a policy's parameters on a trace: cost against p95 wait, with optuna.

Each trial is one full simulation. Trials run in parallel worker processes (one per core by
default) against one persisted study (SQLite by default; any optuna RDB URL, e.g.
PostgreSQL, lets several machines share a study), so an interrupted run resumes where it
stopped. The result is the Pareto front of (cost, p95 wait) and one chosen configuration,
written as YAML that ``dlscaler simulate --config`` and the Helm chart accept unchanged.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from dlscaler.config import PolicyConfig, PoolModel, PredictiveParams
from dlscaler.policy.forecast_needs import lead_time_s
from dlscaler.trace import Trace
from simulator.compare import config_for
from simulator.forecasting import default_forecast_factory
from simulator.report import build_report
from simulator.runner import SimOptions, simulate

OBJECTIVES = ("cost_usd", "wait_p95_s")


@dataclass(frozen=True, slots=True)
class TrialResult:
    number: int
    cost_usd: float
    wait_p95_s: float
    config: PolicyConfig


def suggest(trial: Any, base: PolicyConfig) -> PolicyConfig:
    """The search space. Bounds are wide on purpose: tuning must be able to find a config
    that generalises, not just one that fits a corner of one trace."""
    cfg = replace(base, idle_timeout_s=float(trial.suggest_int("idle_timeout_s", 0, 3600, step=60)))
    if base.policy == "predictive":
        cfg = replace(
            cfg,
            predictive=PredictiveParams(
                quantile=trial.suggest_float("quantile", 0.5, 0.99),
                lead_time_factor=trial.suggest_float("lead_time_factor", 0.5, 4.0),
                headroom_gpus=float(trial.suggest_int("headroom_gpus", 0, 32)),
                scale_down_quantile=trial.suggest_float("scale_down_quantile", 0.3, 0.95),
                max_error_ratio=trial.suggest_float("max_error_ratio", 0.8, 3.0),
                hysteresis_nodes=trial.suggest_int("hysteresis_nodes", 0, 3),
                arrival_quantile=trial.suggest_float("arrival_quantile", 0.0, 0.97),
                consolidate_within_s=float(
                    trial.suggest_int("consolidate_within_s", 0, 7200, step=900)
                ),
                arrival_budget=trial.suggest_float("arrival_budget", 0.0, 0.1),
            ),
        )
    return cfg


def evaluate(
    trace: Trace, pools: Sequence[PoolModel], cfg: PolicyConfig, seed: int
) -> tuple[float, float]:
    cfg = config_for(cfg.policy, cfg, trace, pools)
    result = simulate(
        trace,
        pools,
        cfg,
        options=SimOptions(seed=seed),
        forecast_source=(
            default_forecast_factory(cfg, lead_time_s(cfg, pools))
            if cfg.policy == "predictive"
            else None
        ),
    )
    report = build_report(result)
    return float(report["cost_usd"]), float(report["wait_s"]["p95"])


# Worker processes inherit these through fork, so the trace is parsed once.
_WORK: dict[str, Any] = {}


def _worker(storage: str, study_name: str, n_trials: int, seed: int) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trace, pools, base = _WORK["trace"], _WORK["pools"], _WORK["base"]
    study = optuna.load_study(
        study_name=study_name,
        storage=_storage(storage),
        sampler=optuna.samplers.NSGAIISampler(seed=seed),
    )

    def objective(trial: Any) -> tuple[float, float]:
        cfg = suggest(trial, base)
        return evaluate(trace, pools, cfg, _WORK["sim_seed"])

    study.optimize(objective, n_trials=n_trials, catch=(ValueError,))
    return n_trials


def _storage(url: str) -> Any:
    import optuna

    if url.startswith("sqlite:"):
        # Parallel writers on one SQLite file: wait for the lock instead of failing.
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return url


def run_study(
    trace: Trace,
    pools: Sequence[PoolModel],
    base: PolicyConfig,
    *,
    trials: int,
    storage: str,
    study_name: str,
    workers: int,
    seed: int = 0,
    max_wait_p95_s: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[TrialResult], TrialResult]:
    """Run (or resume) the study until it has ``trials`` finished trials; return the Pareto
    front and the chosen trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=_storage(storage),
        directions=["minimize", "minimize"],
        load_if_exists=True,
    )
    done = sum(1 for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    if done == 0:
        # The defaults first: the front always contains a point to compare against.
        study.enqueue_trial(_params_of(base), skip_if_exists=True)
        if base.policy == "predictive":
            # A second start point at the cheap end: no room kept for arrivals. The space
            # is wide, so random first trials rarely land near either.
            cheap = replace(base.predictive, arrival_quantile=0.0, arrival_budget=0.0)
            study.enqueue_trial(_params_of(replace(base, predictive=cheap)), skip_if_exists=True)
    _WORK.update(trace=trace, pools=list(pools), base=base, sim_seed=seed)
    waiting = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
    first = min(len(waiting), max(0, trials - done))
    if first:
        # Enqueued trials run here, one at a time: worker processes taking waiting trials
        # from one SQLite file at once can both take the same one ("Cannot tell a
        # COMPLETE trial").
        _worker(storage, study_name, first, seed)
        done += first
        if on_progress:
            on_progress(done, trials)
    remaining = max(0, trials - done)
    if remaining:
        workers = max(1, min(workers, remaining))
        shares = [
            remaining // workers + (1 if i < remaining % workers else 0) for i in range(workers)
        ]
        if workers == 1:
            _worker(storage, study_name, remaining, seed)
        else:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [
                    pool.submit(_worker, storage, study_name, share, seed + i)
                    for i, share in enumerate(shares)
                ]
                finished = 0
                for fut in futures:
                    finished += fut.result()
                    if on_progress:
                        on_progress(done + finished, trials)
    _WORK.clear()
    study = optuna.load_study(study_name=study_name, storage=_storage(storage))
    front = [_result(t, base) for t in study.best_trials]
    front.sort(key=lambda r: (r.cost_usd, r.wait_p95_s))
    all_trials = [
        _result(t, base) for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
    ]
    return front, choose(front, all_trials, max_wait_p95_s)


def _params_of(cfg: PolicyConfig) -> dict[str, Any]:
    params: dict[str, Any] = {"idle_timeout_s": int(round(cfg.idle_timeout_s / 60) * 60)}
    if cfg.policy == "predictive":
        p = cfg.predictive
        params |= {
            "quantile": p.quantile,
            "lead_time_factor": p.lead_time_factor,
            "headroom_gpus": int(p.headroom_gpus),
            "scale_down_quantile": p.scale_down_quantile,
            "max_error_ratio": p.max_error_ratio,
            "hysteresis_nodes": p.hysteresis_nodes,
            "arrival_quantile": p.arrival_quantile,
            "consolidate_within_s": min(7200, int(round(p.consolidate_within_s / 900) * 900)),
            "arrival_budget": p.arrival_budget,
        }
    return params


def _result(trial: Any, base: PolicyConfig) -> TrialResult:
    import optuna

    # A study begun before a parameter existed: its trials ran with that parameter's default.
    fixed = optuna.trial.FixedTrial({**_params_of(base), **trial.params})
    return TrialResult(trial.number, trial.values[0], trial.values[1], suggest(fixed, base))


def choose(
    front: Sequence[TrialResult],
    trials: Sequence[TrialResult],
    max_wait_p95_s: float | None = None,
) -> TrialResult:
    """The Pareto point to deploy.

    With ``max_wait_p95_s``: the cheapest point within it. Otherwise the knee: the point
    with the least cost + wait, each normalised by the defaults' trial (trial 0), with
    waits under a minute counted as a minute so seconds of wait do not buy dollars.
    """
    if max_wait_p95_s is not None:
        within = [r for r in front if r.wait_p95_s <= max_wait_p95_s]
        if within:
            return min(within, key=lambda r: (r.cost_usd, r.number))
    reference = next((t for t in trials if t.number == 0), front[0])
    cost_ref = max(reference.cost_usd, 1e-9)
    wait_ref = max(reference.wait_p95_s, 60.0)

    def score(r: TrialResult) -> float:
        return r.cost_usd / cost_ref + max(r.wait_p95_s, 60.0) / wait_ref

    return min(front, key=lambda r: (score(r), r.number))
