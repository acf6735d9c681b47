"""``dlscaler simulate`` and ``dlscaler gen-trace`` end to end, through the real command
line (typer's CliRunner in-process, and once as a subprocess of the installed script)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dlscaler.cli import app
from dlscaler.trace import parse_trace

REPORT_KEYS = {
    "policy": None,
    "jobs": {"total", "completed", "unfinished"},
    "gpu_hours": {"demanded", "provisioned", "idle"},
    "utilization": None,
    "cost_usd": None,
    "wait_s": {"mean", "p50", "p95", "p99"},
    "scale_events": None,
    "sim_events": None,
    "wall_s": None,
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def dlscaler(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """Messages printed through rich are wrapped at the console width (80 columns when not
    a terminal); compare them with the line breaks undone."""
    return " ".join(text.split())


def write_pools(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the test's directory, so file names in messages stay short."""
    monkeypatch.chdir(tmp_path)


def test_simulate_writes_report_json_and_timeline_png(openb_window: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = dlscaler(
        "simulate",
        "--trace",
        openb_window,
        "--policy",
        "static-peak,reactive,predictive,oracle",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "report.json").read_text())
    assert {"trace", "pools", "seed", "reports"} <= set(doc)
    assert doc["seed"] == 0
    assert [r["policy"] for r in doc["reports"]] == [
        "static-peak",
        "reactive",
        "predictive",
        "oracle",
    ]
    for report in doc["reports"]:
        for key, inner in REPORT_KEYS.items():
            assert key in report, f"{report['policy']}: no {key}"
            if inner:
                assert inner <= set(report[key]), f"{report['policy']}: {key}"
        assert report["jobs"]["total"] == 300
        assert report["jobs"]["completed"] + report["jobs"]["unfinished"] == 300
    png = (out / "timeline.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
    # The same numbers print as a table.
    for policy in ("static-peak", "reactive", "predictive", "oracle"):
        assert policy in result.stdout
    assert "300/300" in result.stdout


def test_two_cli_runs_give_the_same_report_except_wall_time(
    openb_window: Path, tmp_path: Path
) -> None:
    pools = write_pools(
        tmp_path / "pools.yaml",
        "pools:\n"
        "  - name: a100\n"
        "    gpusPerNode: 8\n"
        "    maxNodes: 50\n"
        "    pricePerHour: 32.77\n"
        "    simulation: {delayDistribution: lognormal, bootFailureRate: 0.2}\n",
    )
    docs = []
    for run in ("one", "two"):
        result = dlscaler(
            "simulate",
            "--trace",
            openb_window,
            "--pools",
            pools,
            "--policy",
            "reactive,oracle",
            "--seed",
            "42",
            "--no-plot",
            "--out",
            tmp_path / run,
        )
        assert result.exit_code == 0, result.output
        doc = json.loads((tmp_path / run / "report.json").read_text())
        for report in doc["reports"]:
            assert report.pop("wall_s") >= 0
        docs.append(doc)
    assert docs[0] == docs[1]
    assert docs[0]["seed"] == 42
    assert not (tmp_path / "one" / "timeline.png").exists()  # --no-plot


def test_a_bad_trace_exits_2_and_names_the_line(tmp_path: Path) -> None:
    trace = Path("bad.csv")
    trace.write_text("job_id,submit_s,duration_s,num_gpus\na,0,60,1\nb,5,60,two\n")
    result = dlscaler("simulate", "--trace", trace, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert f"{trace}:3: column 'num_gpus'" in flat(result.stderr)
    assert "--skip-invalid" in flat(result.stderr)
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_skip_invalid_skips_counts_and_reports(tmp_path: Path) -> None:
    trace = Path("some-bad.csv")
    trace.write_text(
        "job_id,submit_s,duration_s,num_gpus\na,0,60,1\nb,5,0,1\nc,10,60,2\nd,x,60,1\n"
    )
    out = tmp_path / "out"
    result = dlscaler("simulate", "--trace", trace, "--skip-invalid", "--no-plot", "--out", out)
    assert result.exit_code == 0, result.output
    assert "skipped 2 malformed row(s)" in flat(result.stderr)
    assert f"{trace}:3: column 'duration_s'" in flat(result.stderr)  # the first reason
    doc = json.loads((out / "report.json").read_text())
    assert (doc["trace_jobs"], doc["trace_skipped_rows"]) == (2, 2)
    assert doc["reports"][0]["jobs"]["total"] == 2


@pytest.mark.parametrize(
    ("pools_yaml", "says"),
    [
        (
            "pools:\n  - {name: ok, gpusPerNode: 8, maxNodes: 2, pricePerHour: 1}\n"
            "  - {name: bad, maxNodes: 2, pricePerHour: 1}\n",
            "pools[1]: gpusPerNode: Field required",
        ),
        (
            "- {name: a, gpusPerNode: 8, maxNodes: 2, pricePerHour: 1, provider: ibm}\n",
            "pools[0]: provider:",
        ),
        ("pools: [name: a\n", "not valid YAML"),
        ("", "expected a list of pools"),
    ],
)
def test_a_bad_pools_file_exits_2_and_names_file_index_and_field(
    openb_window: Path, pools_yaml: str, says: str
) -> None:
    pools = write_pools(Path("pools.yaml"), pools_yaml)
    result = dlscaler("simulate", "--trace", openb_window, "--pools", pools)
    assert result.exit_code == 2
    assert str(pools) in flat(result.stderr)
    assert says in flat(result.stderr)
    assert "Traceback" not in result.output


def test_missing_files_and_unknown_policies_exit_2(openb_window: Path, tmp_path: Path) -> None:
    result = dlscaler("simulate", "--trace", tmp_path / "nope.csv")
    assert result.exit_code == 2 and "cannot read trace" in flat(result.stderr)
    result = dlscaler("simulate", "--trace", openb_window, "--pools", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "cannot read pools file" in flat(result.stderr)
    result = dlscaler("simulate", "--trace", openb_window, "--policy", "reactive,magic")
    assert result.exit_code == 2
    assert "unknown magic" in flat(result.stderr) and "static-peak" in flat(result.stderr)


def test_gen_trace_writes_a_trace_that_parses_with_the_requested_jobs(tmp_path: Path) -> None:
    path = tmp_path / "synth.csv"
    result = dlscaler(
        "gen-trace", "--out", path, "--jobs", "250", "--days", "2", "--seed", "3",
        "--gpu-types", "a100,t4",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with path.open(newline="") as fh:
        trace = parse_trace(fh, source=str(path))
    assert len(trace.jobs) == 250
    assert trace.skipped_rows == 0
    assert {j.gpu_type for j in trace.jobs} <= {"a100", "t4"}
    assert all(0 <= j.submit_s <= 2 * 86_400 for j in trace.jobs)
    # Seeded: the same seed writes the same file, another seed another one.
    again = tmp_path / "again.csv"
    dlscaler("gen-trace", "--out", again, "--jobs", "250", "--days", "2", "--seed", "3",
             "--gpu-types", "a100,t4")  # fmt: skip
    assert again.read_bytes() == path.read_bytes()
    other = tmp_path / "other.csv"
    dlscaler("gen-trace", "--out", other, "--jobs", "250", "--days", "2", "--seed", "4",
             "--gpu-types", "a100,t4")  # fmt: skip
    assert other.read_bytes() != path.read_bytes()


def test_gen_trace_to_stdout_feeds_simulate(tmp_path: Path) -> None:
    result = dlscaler("gen-trace", "--out", "-", "--jobs", "40", "--days", "0.5")
    assert result.exit_code == 0
    trace = parse_trace(result.stdout.splitlines(keepends=True), source="stdout")
    assert len(trace.jobs) == 40
    path = tmp_path / "t.csv"
    path.write_text(result.stdout)
    run = dlscaler("simulate", "--trace", path, "--policy", "reactive", "--no-plot")
    assert run.exit_code == 0, run.output
    assert "40/40" in run.stdout


def test_the_installed_command_exits_2_on_a_bad_trace() -> None:
    exe = shutil.which("dlscaler")
    assert exe is not None, "the dlscaler script is not on PATH (source hack/env.sh)"
    trace = Path("bad.csv")
    trace.write_text("job_id,submit_s,duration_s\na,0,60\n")
    proc = subprocess.run(
        [exe, "simulate", "--trace", str(trace)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{trace}:1: header lacks column(s) num_gpus" in flat(proc.stderr)
    assert "Traceback" not in flat(proc.stderr)
