"""Arrival scenarios: which past windows they are, and what each holds."""

from __future__ import annotations

import pytest

from dlscaler.model import Gang
from predictors.arrivals import DAY_S, ArrivalWindows


def job(i: int, t: float, gpus: int = 1) -> Gang:
    return Gang(f"j{i}", t, 1, gpus)


def test_no_history_no_scenarios() -> None:
    assert ArrivalWindows(300.0).scenarios(1_000.0) == ()


def test_recent_windows_slide_back_from_now() -> None:
    w = ArrivalWindows(300.0, step_s=300.0, days=0, recent=3)
    for i, t in enumerate([0.0, 350.0, 700.0, 950.0]):
        w.observe(job(i, t))
    # windows [700,1000), [400,700), [100,400) at now=1000
    got = [tuple(g.job_id for g in s) for s in w.scenarios(1_000.0)]
    assert got == [("j2", "j3"), (), ("j1",)]


def test_same_time_of_day_on_earlier_days() -> None:
    w = ArrivalWindows(600.0, step_s=300.0, days=2, offsets=0, recent=0)
    w.observe(job(0, 100.0, gpus=8))  # day 0, 00:01:40
    w.observe(job(1, DAY_S + 200.0, gpus=4))  # day 1, 00:03:20
    w.observe(job(2, DAY_S + 5_000.0))  # day 1, later: in no window
    got = [tuple(g.job_id for g in s) for s in w.scenarios(2 * DAY_S)]
    # now = day 2 00:00; windows start at day 1 00:00 and day 0 00:00 (10 minutes each)
    assert got == [("j1",), ("j0",)]


def test_windows_before_the_first_arrival_are_left_out() -> None:
    w = ArrivalWindows(300.0, step_s=300.0, days=7, offsets=6, recent=24)
    w.observe(job(0, 10 * DAY_S))
    scenarios = w.scenarios(10 * DAY_S + 3_600.0)
    # only the recent windows (the last 2 hours, back to the arrival) count
    assert 0 < len(scenarios) <= 24
    assert sum(len(s) for s in scenarios) >= 1


def test_old_arrivals_are_forgotten() -> None:
    w = ArrivalWindows(300.0, step_s=300.0, days=1, offsets=0, recent=1)
    for i in range(10_000):
        w.observe(job(i, float(i)))
    far = 10_000.0 + 3 * DAY_S
    assert w.scenarios(far) == ()  # nothing arrived within any window: nothing to keep room for
    assert len(w._times) < 10_000  # and the memory was given back


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="arrival window"):
        ArrivalWindows(0.0)


def test_quiet_days_stay_samples_when_old_arrivals_are_forgotten() -> None:
    """One arrival on day 0, then traffic from day 5: when the day-0 arrival ages out of
    the 7 days kept, the windows of days 1-4 still count (as quiet windows)."""
    w = ArrivalWindows(300.0, step_s=300.0, days=7, offsets=6, recent=24)
    w.observe(job(0, 0.0))
    t = 5 * DAY_S
    i = 1
    while t < 7.1 * DAY_S:
        w.observe(job(i, t))
        i += 1
        t += 900.0
    before = w.scenarios(6.95 * DAY_S)
    after = w.scenarios(7.05 * DAY_S)
    # every earlier day is still sampled (day 0's window joins once it is 7 days back)
    assert len(after) >= len(before) == 102
    assert sum(1 for s in after if not s) >= sum(1 for s in before if not s)
