"""``dlscaler forecast`` end to end on a small trace written to disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dlscaler.cli import app


@pytest.fixture
def trace_csv(tmp_path):
    """Three days of jobs arriving faster by day than by night."""
    rng = np.random.default_rng(0)
    rows = ["job_id,submit_s,duration_s,num_gpus"]
    t, i = 0.0, 0
    while t < 3 * 86_400:
        rate = 1 / 600 if (t // 43_200) % 2 == 0 else 1 / 2400
        t += rng.exponential(1 / rate)
        rows.append(f"j{i},{t:.0f},{rng.lognormal(7, 1.5):.0f},{rng.choice([1, 1, 2, 8])}")
        i += 1
    path = tmp_path / "trace.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_prints_the_table_and_writes_json_and_plot(trace_csv, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "forecast",
            "--trace",
            str(trace_csv),
            "--warmup",
            "1d",
            "--refit",
            "12h",
            "--models",
            "regression,auto",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "naive-quantiles" in result.output and "auto" in result.output
    doc = json.loads((out / "forecast.json").read_text())
    assert doc["step_s"] == 300.0 and doc["horizon_s"] == 3600.0
    for name in ("naive", "seasonal-naive-daily", "naive-quantiles", "regression", "auto"):
        assert set(doc["models"][name]) >= {
            "mae",
            "rel_mae",
            "pinball_p90",
            "rel_pinball_p90",
            "coverage_p90",
            "fit_s",
            "predict_s",
        }
    assert doc["models"]["naive-quantiles"]["rel_pinball_p90"] == 1.0
    assert doc["chosen"]
    assert doc["machine"]["cores"] >= 1
    assert (out / "forecast.png").stat().st_size > 10_000
    # The path written stays on one line, however long, off a terminal (CI logs).
    assert f"wrote {out / 'forecast.json'}" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--step", "5 minutes"], "not a duration"),
        (["--models", "naive,prophet"], "unknown model(s) prophet"),
        (["--warmup", "30d"], "use a shorter --warmup"),
        (["--horizon", "1m"], "at least one --step"),
    ],
)
def test_bad_options_exit_2_with_a_message_saying_what_to_do(trace_csv, args, message):
    result = CliRunner().invoke(app, ["forecast", "--trace", str(trace_csv), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_missing_trace_names_the_file(tmp_path):
    result = CliRunner().invoke(app, ["forecast", "--trace", str(tmp_path / "nope.csv")])
    assert result.exit_code == 2
    assert "nope.csv" in result.output
