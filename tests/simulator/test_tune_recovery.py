"""``dlscaler tune`` after an interruption: trials a killed run left RUNNING are marked failed
once their heartbeat is stale and the start points are evaluated again, while a live
process's running trial (another machine sharing the study) is never touched."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from dlscaler.config import DEFAULT_POOL, PolicyConfig, PredictiveParams
from dlscaler.trace import Trace, parse_trace
from simulator.synth import SynthSpec, generate, to_csv
from simulator.tune import HEARTBEAT_ATTR, LEGACY_RUNNING_S, evaluate, run_study, start_points

# One process of ``dlscaler tune`` on its own: ``run_study`` with the given trace and study.
# The heartbeat is fast so the test need not wait a minute for a killed trial to go stale.
TUNE = """
import sys
from dlscaler.config import DEFAULT_POOL
from dlscaler.trace import parse_trace
from simulator.tune import run_study
from test_tune_recovery import BASES

trace_path, storage, grace_s, base = sys.argv[1:]
with open(trace_path, newline="") as fh:
    trace = parse_trace(fh, source=trace_path)
run_study(
    trace, [DEFAULT_POOL], BASES[base], trials=1, storage=storage, study_name="s",
    workers=1, heartbeat_interval_s=1, grace_period_s=int(grace_s),
)
"""

BASES = {
    "predictive": PolicyConfig(policy="predictive"),
    # no room kept for arrivals: the defaults are the cheap start, the one start point
    "one-start": PolicyConfig(
        policy="predictive", predictive=PredictiveParams(arrival_quantile=0.0, arrival_budget=0.0)
    ),
}
BASE = BASES["predictive"]
DEFAULTS = start_points(BASE)["defaults"]


def load(path: Path) -> Trace:
    with path.open(newline="") as fh:
        return parse_trace(fh, source=str(path))


def new_study(storage: str) -> optuna.Study:
    return optuna.create_study(study_name="s", storage=storage, directions=["minimize", "minimize"])


def start_tune(trace: Path, storage: str, grace_s: int, base: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", TUNE, str(trace), storage, str(grace_s), base],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )


def wait_running(study: optuna.Study, proc: subprocess.Popen[bytes]) -> optuna.trial.FrozenTrial:
    """The trial the process is simulating, once it records heartbeats."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else proc.returncode
        running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        if running and HEARTBEAT_ATTR in running[0].user_attrs:
            return running[0]
        time.sleep(0.02)
    raise AssertionError("the tune process never started a trial")


def by_number(study: optuna.Study) -> dict[int, optuna.trial.FrozenTrial]:
    return {t.number: t for t in study.get_trials()}


def defaults_attempts(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if t.system_attrs.get("fixed_params") == DEFAULTS]


def test_a_run_killed_mid_trial_leaves_it_failed_and_the_defaults_evaluated(
    tmp_path: Path, openb_window: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = new_study(storage)
    proc = start_tune(openb_window, storage, grace_s=2, base="predictive")
    try:
        killed = wait_running(study, proc)
    finally:
        proc.kill()
        proc.wait()
    # the defaults (trial 0) were being simulated when the process died: it stays RUNNING
    assert killed.number == 0 and killed.system_attrs["fixed_params"] == DEFAULTS
    assert by_number(study)[0].state == optuna.trial.TrialState.RUNNING

    trace = load(openb_window)
    notes: list[str] = []
    run = run_study(
        trace, [DEFAULT_POOL], BASE, trials=1, storage=storage, study_name="s", workers=1,
        heartbeat_interval_s=1, grace_period_s=2, on_note=notes.append,
    )  # fmt: skip

    trials = by_number(study)
    assert trials[0].state == optuna.trial.TrialState.FAIL
    assert run.stopped == [0]
    # the defaults ran again, as a new trial, as did the cheap start the killed run queued
    [again] = [t for t in defaults_attempts(study) if t.number != 0]
    assert again.state == optuna.trial.TrialState.COMPLETE
    assert tuple(again.values) == evaluate(trace, [DEFAULT_POOL], BASE, seed=0)
    assert trials[1].user_attrs["start_point"] == "cheap"
    assert trials[1].state == optuna.trial.TrialState.COMPLETE
    assert run.completed == 2 and run.failed == []
    assert run.chosen is not None
    assert any("trial 0 was left running by a stopped run" in n for n in notes), notes
    assert any("'defaults' queued again" in n for n in notes), notes


def test_a_live_peers_running_trial_is_waited_for_never_failed(tmp_path: Path) -> None:
    # a trace whose predictive trial lasts longer than the grace period
    csv = tmp_path / "synth.csv"
    csv.write_text(to_csv(generate(SynthSpec(jobs=2000, days=2, seed=0))))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = new_study(storage)
    # One start point: two processes never take a waiting trial from one SQLite file at once
    # (a PostgreSQL study, as machines share, locks it; SQLite does not).
    base = BASES["one-start"]
    peer = start_tune(csv, storage, grace_s=3, base="one-start")
    try:
        running = wait_running(study, peer)
        started = time.monotonic()
        notes: list[str] = []
        run = run_study(
            load(csv), [DEFAULT_POOL], base, trials=1, storage=storage, study_name="s",
            workers=1, heartbeat_interval_s=1, grace_period_s=3, on_note=notes.append,
        )  # fmt: skip
        waited_s = time.monotonic() - started
        assert peer.wait(timeout=120) == 0, peer.stdout.read() if peer.stdout else ""
    finally:
        peer.kill()
        peer.wait()
    trials = by_number(study)
    # the peer's trial outlived the grace period, heartbeating: it completed, not failed
    peers = trials[running.number]
    assert peers.state == optuna.trial.TrialState.COMPLETE
    assert peers.datetime_complete and peers.datetime_start
    assert (peers.datetime_complete - peers.datetime_start).total_seconds() > 3
    assert not [t for t in trials.values() if t.state == optuna.trial.TrialState.FAIL]
    assert run.stopped == [] and run.failed == []
    # this run waited for it rather than simulating the defaults a second time
    defaults = start_points(base)["defaults"]
    attempts = [t for t in trials.values() if t.system_attrs.get("fixed_params") == defaults]
    # (past the wait, a still running peer's trial is left to it: this run samples others)
    assert [t.number for t in attempts] == [running.number]
    assert waited_s > 1 and any("waiting up to" in n for n in notes), notes
    assert run.completed >= 1


@pytest.mark.parametrize(("age_h", "stopped"), [(LEGACY_RUNNING_S / 3600 + 1, True), (1, False)])
def test_a_trial_left_running_before_heartbeats_fails_only_when_days_old(
    tmp_path: Path, openb_window: Path, age_h: float, stopped: bool
) -> None:
    """A study interrupted under a dlscaler without heartbeats: its RUNNING defaults trial
    has none, so it cannot go stale; it counts as stopped two days after it started."""
    base = PolicyConfig(policy="reactive")
    defaults = start_points(base)["defaults"]
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = new_study(storage)
    left = optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING, system_attrs={"fixed_params": defaults}
    )
    # optuna records start times naive, in local time
    started = datetime.datetime.now() - datetime.timedelta(hours=age_h)  # noqa: DTZ005
    left.datetime_start = started
    study.add_trial(left)
    notes: list[str] = []
    run = run_study(
        load(openb_window), [DEFAULT_POOL], base, trials=1, storage=storage, study_name="s",
        workers=1, on_note=notes.append,
    )  # fmt: skip
    trials = by_number(study)
    assert run.completed == 1
    if stopped:
        assert trials[0].state == optuna.trial.TrialState.FAIL and run.stopped == [0]
        assert trials[1].system_attrs["fixed_params"] == defaults
        assert trials[1].state == optuna.trial.TrialState.COMPLETE
    else:
        # it may be a live process of an older dlscaler: left alone, and said so
        assert trials[0].state == optuna.trial.TrialState.RUNNING and run.stopped == []
        assert any("without a heartbeat" in n for n in notes), notes
