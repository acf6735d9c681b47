"""Search a policy's parameters on a trace: cost against p95 wait, with optuna.

Each trial is one full simulation. Trials run in parallel worker processes (one per core by
default) against one persisted study (SQLite by default; any optuna RDB URL, e.g.
PostgreSQL, lets several machines share a study), so an interrupted run resumes where it
stopped. The result is the Pareto front of (cost, p95 wait) and one chosen configuration,
written as YAML that ``dlscaler simulate --config`` and the Helm chart accept unchanged.

Interruptions and failures:

- A running trial records a heartbeat in the study (optuna's RDB heartbeat). A run marks
  failed the trials whose heartbeat stopped more than ``GRACE_PERIOD_S`` ago: their process
  was killed. A trial with a fresh heartbeat belongs to a live process, here or on another
  machine sharing the study, and is left alone.
- The start points (the defaults; for predictive also a cheap start) are queued again while
  none of their attempts completed, waits or runs, unless one raised (it would again) or
  ``START_ATTEMPTS`` were stopped: the front always has the defaults to compare against.
- ``trials`` counts completed trials only. A trial that raises fails and is replaced by a
  new one, until ``max_failures`` trials have failed in one run: then the run stops short.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from dlscaler.config import PolicyConfig, PoolModel, PredictiveParams
from dlscaler.policy.forecast_needs import lead_time_s
from dlscaler.trace import Trace
from simulator.compare import config_for
from simulator.forecasting import default_forecast_factory
from simulator.report import build_report
from simulator.runner import SimOptions, simulate

OBJECTIVES = ("cost_usd", "wait_p95_s")

# Every process sharing a study must agree on these two, so they are constants, not options.
HEARTBEAT_INTERVAL_S = 10
"""How often a running trial records that its process is alive."""
GRACE_PERIOD_S = 60
"""A running trial whose last heartbeat is older than this was left by a stopped process."""

LEGACY_RUNNING_S = 48 * 3600
"""Trials recorded before dlscaler kept heartbeats have none. Such a trial still running
this long after it started was left by a stopped run. Its start time is the starting
machine's local time, up to 26 h off between time zones: hence two days."""
START_ATTEMPTS = 3
"""A start point whose process is stopped this many times (out of memory?) is not retried."""
MAX_FAILURES = 10
"""Failed trials replaced in one run before it stops short of its target."""

# Trial user attributes.
HEARTBEAT_ATTR = "heartbeat"  # this trial records heartbeats: it goes stale when stopped
ERROR_ATTR = "error"  # what the simulation raised
START_ATTR = "start_point"  # which start point this trial is an attempt of

# Workers record heartbeats but never fail stale trials themselves (the parent does, between
# phases): a failed start point is queued again as a waiting trial, and two processes can
# take the same waiting trial from one SQLite file.
_NEVER_STALE_S = 10**9

Evaluate = Callable[[Trace, Sequence[PoolModel], PolicyConfig, int], tuple[float, float]]
"""One trial: (trace, pools, config, seed) -> (cost USD, p95 wait s)."""


class TuneError(Exception):
    """The study cannot go on; the message says what to do."""


@dataclass(frozen=True, slots=True)
class TrialResult:
    number: int
    cost_usd: float
    wait_p95_s: float
    config: PolicyConfig
    start_point: str = ""
    """``defaults`` or ``cheap`` for an attempt of a start point, else empty."""


@dataclass(frozen=True, slots=True)
class FailedTrial:
    number: int
    error: str


@dataclass(frozen=True, slots=True)
class StudyRun:
    """What one ``run_study`` call found and did."""

    front: list[TrialResult]
    chosen: TrialResult | None
    """None when no trial of the study has completed."""
    completed: int
    """Completed trials in the study (this run's and earlier ones)."""
    failed: list[FailedTrial]
    """Trials that failed during this run, in order."""
    stopped: list[int]
    """Trials that a stopped run had left running, marked failed by this one."""


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


def start_points(base: PolicyConfig) -> dict[str, dict[str, Any]]:
    """The trials every study evaluates first, by name: the defaults, so the front always
    has a point to compare against; for predictive also a cheap start, no room kept for
    arrivals (the space is wide, so random first trials rarely land near either)."""
    points = {"defaults": _params_of(base)}
    if base.policy == "predictive":
        cheap = replace(base.predictive, arrival_quantile=0.0, arrival_budget=0.0)
        params = _params_of(replace(base, predictive=cheap))
        if params != points["defaults"]:
            points["cheap"] = params
    return points


# Worker processes inherit these through fork, so the trace is parsed once.
_WORK: dict[str, Any] = {}


def _worker(n_trials: int, seed: int) -> None:
    """Run up to ``n_trials`` trials in this process (fewer once the run has failed
    ``max_failures`` of them)."""
    import optuna

    w = _WORK
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _storage(
        w["storage"], heartbeat_interval_s=w["heartbeat_interval_s"], grace_period_s=_NEVER_STALE_S
    )
    study = optuna.load_study(
        study_name=w["study_name"],
        storage=storage,
        sampler=optuna.samplers.NSGAIISampler(seed=seed),
    )
    evaluate_fn: Evaluate = w["evaluate"]

    def objective(trial: Any) -> tuple[float, float]:
        try:
            # optuna's heartbeat thread records one too, but asynchronously: recorded here
            # first, every trial that carries the mark has a heartbeat that can go stale.
            storage.record_heartbeat(trial._trial_id)
            trial.set_user_attr(HEARTBEAT_ATTR, True)
            cfg = suggest(trial, w["base"])
            return evaluate_fn(w["trace"], w["pools"], cfg, w["sim_seed"])
        except Exception as err:
            trial.set_user_attr(ERROR_ATTR, f"{type(err).__name__}: {err}"[:2000])
            raise

    on_progress = w["on_progress"]
    for _ in range(n_trials):
        failed = len(_failed_since(study, w["first_number"]))
        if failed >= w["max_failures"]:
            return
        # Another run may have marked this trial failed: its heartbeat stalled past the grace
        # period (a suspended machine?). Its result is lost; the next trial goes on.
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            study.optimize(objective, n_trials=1, catch=(Exception,))
        if on_progress is not None:
            on_progress(
                _count(study, "COMPLETE"),
                w["trials"],
                len(_failed_since(study, w["first_number"])),
            )


def _storage(url: str, *, heartbeat_interval_s: int, grace_period_s: int) -> Any:
    import optuna

    # Parallel writers on one SQLite file: wait for the lock instead of failing.
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval_s,
            grace_period=grace_period_s,
        )


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
    max_failures: int = MAX_FAILURES,
    on_progress: Callable[[int, int, int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    heartbeat_interval_s: int = HEARTBEAT_INTERVAL_S,
    grace_period_s: int = GRACE_PERIOD_S,
    evaluate_fn: Evaluate = evaluate,
) -> StudyRun:
    """Run (or resume) the study until it has ``trials`` completed trials, or until
    ``max_failures`` trials have failed in this run; return the Pareto front, the chosen
    trial and what failed.

    ``on_progress(completed, trials, failed)`` is called after each trial (from worker
    processes too); ``on_note`` gets one line for each trial recovered or waited for.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    note = on_note or (lambda _line: None)
    watch = _storage(
        storage, heartbeat_interval_s=heartbeat_interval_s, grace_period_s=grace_period_s
    )
    study = optuna.create_study(
        study_name=study_name,
        storage=watch,
        directions=["minimize", "minimize"],
        load_if_exists=True,
    )
    first_number = len(study.get_trials(deepcopy=False))
    starts = start_points(base)
    stopped = _fail_stopped(study, watch, note)
    if _count(study, "COMPLETE") < trials:
        stopped += _wait_for_start_points(
            study, watch, starts, note, wait_s=grace_period_s + heartbeat_interval_s + 1
        )
        _WORK.update(
            trace=trace,
            pools=list(pools),
            base=base,
            sim_seed=seed,
            storage=storage,
            study_name=study_name,
            heartbeat_interval_s=heartbeat_interval_s,
            evaluate=evaluate_fn,
            first_number=first_number,
            max_failures=max_failures,
            trials=trials,
            on_progress=on_progress,
        )
        try:
            _run_trials(study, starts, workers=workers, seed=seed, note=note)
        finally:
            _WORK.clear()
    results = [
        _result(t, base, starts)
        for t in study.get_trials(deepcopy=False, states=_states("COMPLETE"))
    ]
    front = sorted(
        (_result(t, base, starts) for t in study.best_trials),
        key=lambda r: (r.cost_usd, r.wait_p95_s),
    )
    failed = [FailedTrial(t.number, _error_of(t)) for t in _failed_since(study, first_number)]
    return StudyRun(
        front=front,
        chosen=choose(front, results, max_wait_p95_s) if front else None,
        completed=len(results),
        failed=failed,
        stopped=stopped,
    )


def _run_trials(
    study: Any,
    starts: Mapping[str, Mapping[str, Any]],
    *,
    workers: int,
    seed: int,
    note: Callable[[str], None],
) -> None:
    """Run trials until the study has ``trials`` completed and no start point waits, or
    until ``max_failures`` have failed in this run (both in ``_WORK``). Start points run
    first, even past ``trials``: the front always has the defaults to compare against."""
    first_number, trials = _WORK["first_number"], _WORK["trials"]
    while len(_failed_since(study, first_number)) < _WORK["max_failures"]:
        need = trials - _count(study, "COMPLETE")
        if need > 0:
            for name, earlier in _queue_start_points(study, starts):
                if earlier:
                    tried = ", ".join(str(n) for n in earlier)
                    note(f"start point {name!r} queued again (stopped as trial {tried})")
        waiting = study.get_trials(deepcopy=False, states=_states("WAITING"))
        waiting_starts = sum(
            1 for t in waiting if t.system_attrs.get("fixed_params") in starts.values()
        )
        if need <= 0 and not waiting_starts:
            return
        # Each round draws new random points: a round that replaces failed trials must not
        # repeat the draws of the round before it.
        round_seed = seed + 1000 * len(study.get_trials(deepcopy=False))
        if waiting:
            # Waiting trials run here, one at a time: worker processes taking waiting trials
            # from one SQLite file at once can both take the same one ("Cannot tell a
            # COMPLETE trial").
            _worker(max(min(len(waiting), need), waiting_starts), round_seed)
        else:
            _run_parallel(need, workers, round_seed)


def _run_parallel(need: int, workers: int, seed: int) -> None:
    workers = max(1, min(workers, need))
    if workers == 1:
        _worker(need, seed)
        return
    shares = [need // workers + (1 if i < need % workers else 0) for i in range(workers)]
    ctx = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_worker, share, seed + i) for i, share in enumerate(shares)]
            for fut in futures:
                fut.result()
    except BrokenProcessPool:
        raise TuneError(
            "a trial process stopped without reporting (killed? out of memory?); the trials "
            "completed so far are kept: run the same command again to resume"
        ) from None


def _fail_stopped(study: Any, storage: Any, note: Callable[[str], None]) -> list[int]:
    """Mark failed the trials a stopped run left running; return their numbers."""
    import optuna

    running = study.get_trials(deepcopy=False, states=_states("RUNNING"))
    if not running:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # those whose heartbeat is stale
    now = datetime.now()  # noqa: DTZ005 - optuna records datetime_start naive, local time
    for t in running:
        started = t.datetime_start
        if HEARTBEAT_ATTR in t.user_attrs or started is None:
            continue
        if (now - started).total_seconds() > LEGACY_RUNNING_S:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    numbers = {t.number for t in running}
    failed = [
        t.number
        for t in study.get_trials(deepcopy=False, states=_states("FAIL"))
        if t.number in numbers
    ]
    for number in failed:
        note(f"trial {number} was left running by a stopped run: marked failed")
    return failed


def _wait_for_start_points(
    study: Any,
    storage: Any,
    starts: Mapping[str, Mapping[str, Any]],
    note: Callable[[str], None],
    *,
    wait_s: float,
) -> list[int]:
    """A start point running when a run begins belongs to a live process, or to a run
    stopped less than the grace period ago: a run restarted at once after a kill. Its
    heartbeat tells which within the grace period, so wait that long for it to complete or
    go stale (then it is queued again) rather than leave the defaults out of the front."""
    deadline = time.monotonic() + wait_s
    stopped: list[int] = []
    told = False
    while True:
        running = _running_start_points(study, starts)
        # A trial from before heartbeats cannot go stale: waiting for it is no use.
        live = {name: t for name, t in running.items() if HEARTBEAT_ATTR in t.user_attrs}
        for name, t in running.items():
            if name not in live and not told:
                note(
                    f"start point {name!r} is trial {t.number}, running since "
                    f"{t.datetime_start:%Y-%m-%d %H:%M} without a heartbeat (recorded before "
                    f"dlscaler kept them): it counts as stopped {LEGACY_RUNNING_S // 3600} h "
                    "after it started"
                )
        left = deadline - time.monotonic()
        if not live or left <= 0:
            for name, t in live.items():
                note(
                    f"start point {name!r} is trial {t.number}, running in another live "
                    "process: the front includes it once that completes"
                )
            return stopped
        if not told:
            numbers = ", ".join(str(t.number) for t in live.values())
            note(
                f"waiting up to {wait_s:.0f} s for trial(s) {numbers} (start points): running "
                "elsewhere, or left by a run stopped less than a grace period ago"
            )
        told = True
        time.sleep(min(left, float(storage.get_heartbeat_interval() or 1)))
        stopped += _fail_stopped(study, storage, note)


def _attempts(trials: Sequence[Any], params: Mapping[str, Any]) -> list[Any]:
    return [t for t in trials if t.system_attrs.get("fixed_params") == params]


def _running_start_points(study: Any, starts: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Start points with no completed attempt and one running: name -> the running trial."""
    import optuna

    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    running = {}
    for name, params in starts.items():
        attempts = _attempts(trials, params)
        if any(t.state == state.COMPLETE for t in attempts):
            continue
        busy = [t for t in attempts if t.state == state.RUNNING]
        if busy:
            running[name] = busy[0]
    return running


def _queue_start_points(
    study: Any, starts: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, list[int]]]:
    """Enqueue the start points that have no attempt completed, waiting or running; not one
    whose attempt raised (it would again), nor one stopped ``START_ATTEMPTS`` times. Return
    the names queued, each with its earlier (stopped) attempts."""
    import optuna

    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    queued = []
    for name, params in starts.items():
        attempts = _attempts(trials, params)
        if any(t.state in (state.COMPLETE, state.WAITING, state.RUNNING) for t in attempts):
            continue
        if any(ERROR_ATTR in t.user_attrs for t in attempts) or len(attempts) >= START_ATTEMPTS:
            continue
        study.enqueue_trial(dict(params), user_attrs={START_ATTR: name})
        queued.append((name, [t.number for t in attempts]))
    return queued


def _states(*names: str) -> tuple[Any, ...]:
    import optuna

    return tuple(optuna.trial.TrialState[name] for name in names)


def _count(study: Any, state: str) -> int:
    return len(study.get_trials(deepcopy=False, states=_states(state)))


def _failed_since(study: Any, first_number: int) -> list[Any]:
    return [
        t
        for t in study.get_trials(deepcopy=False, states=_states("FAIL"))
        if t.number >= first_number
    ]


def _error_of(trial: Any) -> str:
    error = trial.user_attrs.get(ERROR_ATTR)
    return str(error) if error else "stopped while running (process killed or interrupted)"


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


def _result(trial: Any, base: PolicyConfig, starts: Mapping[str, Mapping[str, Any]]) -> TrialResult:
    import optuna

    # A study begun before a parameter existed: its trials ran with that parameter's default.
    fixed = optuna.trial.FixedTrial({**_params_of(base), **trial.params})
    fixed_params = trial.system_attrs.get("fixed_params")
    start = next((name for name, params in starts.items() if params == fixed_params), "")
    return TrialResult(trial.number, trial.values[0], trial.values[1], suggest(fixed, base), start)


def choose(
    front: Sequence[TrialResult],
    trials: Sequence[TrialResult],
    max_wait_p95_s: float | None = None,
) -> TrialResult:
    """The Pareto point to deploy.

    With ``max_wait_p95_s``: the cheapest point within it. Otherwise the knee: the point
    with the least cost + wait, each normalised by the defaults' trial (trial 0 in a study
    that predates start point records), with waits under a minute counted as a minute so
    seconds of wait do not buy dollars.
    """
    if max_wait_p95_s is not None:
        within = [r for r in front if r.wait_p95_s <= max_wait_p95_s]
        if within:
            return min(within, key=lambda r: (r.cost_usd, r.number))
    reference = next(
        (t for t in trials if t.start_point == "defaults"),
        next((t for t in trials if t.number == 0), front[0]),
    )
    cost_ref = max(reference.cost_usd, 1e-9)
    wait_ref = max(reference.wait_p95_s, 60.0)

    def score(r: TrialResult) -> float:
        return r.cost_usd / cost_ref + max(r.wait_p95_s, 60.0) / wait_ref

    return min(front, key=lambda r: (score(r), r.number))
