"""``dlscaler`` messages where stderr is not a terminal (CI logs, pipes): a long path stays
on one line, in typer's usage errors and in what ``tune`` and ``simulate`` print."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlscaler.cli import app


@pytest.fixture
def deep(tmp_path: Path) -> Path:
    """A directory whose path alone is wider than 80 columns."""
    path = tmp_path / ("runs-of-the-nightly-capacity-study-" * 2) / ("window-" * 8)
    path.mkdir(parents=True)
    assert len(str(path)) > 120
    return path


def run_cli(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stderr


def one_line_with(text: str, needle: str) -> bool:
    return any(needle in line for line in text.splitlines())


def test_a_usage_error_keeps_a_long_path_on_one_line(deep: Path) -> None:
    trace = deep / "trace.csv"
    # the trace given twice, once without --trace: click refuses the extra argument
    code, stderr = run_cli("tune", "--trace", trace, trace)
    assert code == 2
    assert one_line_with(stderr, f"unexpected extra argument(s) ({trace})"), stderr
    code, stderr = run_cli("simulate", "--trace", trace, "--seed", f"{trace}")
    assert code == 2
    assert one_line_with(stderr, "Invalid value for '--seed'"), stderr


def test_the_installed_command_through_a_pipe_keeps_a_long_path_on_one_line(deep: Path) -> None:
    exe = shutil.which("dlscaler")
    assert exe, "dlscaler is not installed in this environment"
    trace = deep / "trace.csv"
    proc = subprocess.run(
        [exe, "simulate", "--trace", str(trace), str(trace)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert one_line_with(proc.stderr, f"unexpected extra argument(s) ({trace})"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_tune_and_simulate_print_long_paths_on_one_line(deep: Path) -> None:
    trace = deep / "trace.csv"
    rows = [f"j{i},{i * 600},{1200 + 300 * (i % 3)},{[1, 8, 16][i % 3]}" for i in range(8)]
    trace.write_text("\n".join(["job_id,submit_s,duration_s,num_gpus", *rows, "bad,row"]) + "\n")
    out = deep / "tune-out"
    code, stderr = run_cli(
        "tune", "--trace", trace, "--policy", "reactive", "--trials", "2", "--workers", "1",
        "--out", out,
    )  # fmt: skip
    # tune reads the trace strictly: the malformed row is an error naming file and line
    assert code == 2
    assert one_line_with(stderr, f"{trace}:10"), stderr
    trace.write_text("\n".join(["job_id,submit_s,duration_s,num_gpus", *rows]) + "\n")
    code, stderr = run_cli(
        "tune", "--trace", trace, "--policy", "reactive", "--trials", "2", "--workers", "1",
        "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    assert one_line_with(stderr, f"in sqlite:///{out / 'study.db'}:"), stderr
    assert one_line_with(stderr, f"wrote {out / 'tuned.yaml'}, {out / 'pareto.json'}"), stderr

    trace.write_text("\n".join(["job_id,submit_s,duration_s,num_gpus", *rows, "bad,row"]) + "\n")
    code, stderr = run_cli(
        "simulate", "--trace", trace, "--skip-invalid", "--out", deep / "sim", "--no-plot"
    )
    assert code == 0, stderr
    assert one_line_with(stderr, f"first: {trace}:10:"), stderr
    assert one_line_with(stderr, f"wrote {deep / 'sim' / 'report.json'}"), stderr
