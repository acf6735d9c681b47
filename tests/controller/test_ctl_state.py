"""The persisted demand history: compact encoding, peaks per step, gaps, resampling."""

from __future__ import annotations

import json

import pytest

from controller.state import DemandHistory


def test_each_step_keeps_its_peak():
    h = DemandHistory(step_s=60)
    h.observe(0, 8)
    h.observe(30, 16)
    h.observe(59, 4)
    h.observe(61, 2)
    assert h.values == [16, 2]
    assert h.start_s == 0


def test_a_gap_is_filled_with_the_last_value_before_it():
    h = DemandHistory(step_s=60)
    h.observe(0, 8)
    h.observe(240, 4)
    assert h.values == [8, 8, 8, 8, 4]


def test_the_window_keeps_the_latest_points():
    h = DemandHistory(step_s=10, max_points=3)
    for i in range(5):
        h.observe(i * 10, i)
    assert h.values == [2, 3, 4]
    assert h.start_s == 20


def test_encoding_round_trips_and_is_compact():
    h = DemandHistory(step_s=60, max_points=20_160)
    for i in range(20_160):
        h.observe(1_700_000_000 + i * 60, float((i // 30) % 17) * 8)
    text = h.encode()
    back = DemandHistory.decode(text, step_s=60, max_points=20_160)
    assert back.values == h.values
    assert back.start_s == h.start_s
    assert len(text) < 40_000  # two weeks of one-minute steps, far below a ConfigMap's 1 MiB
    assert json.loads(text)["points"] == 20_160


def test_a_history_kept_at_another_step_is_resampled_by_peak():
    h = DemandHistory(step_s=30)
    for i, v in enumerate([1, 5, 2, 2]):
        h.observe(i * 30, v)
    back = DemandHistory.decode(h.encode(), step_s=60)
    assert back.values == [5, 2]


def test_an_unknown_format_version_is_refused():
    with pytest.raises(ValueError, match="format"):
        DemandHistory.decode(json.dumps({"version": 99}))
