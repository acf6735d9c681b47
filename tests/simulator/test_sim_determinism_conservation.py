"""Same inputs and seed, same report (except ``wall_s``); GPU-hours are conserved; and the
report's numbers on a one-job trace, computed by hand."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dlscaler.config import PolicyConfig, PoolModel
from dlscaler.trace import Trace, parse_trace
from simulator.compare import run_policies
from simulator.forecasting import default_forecast_factory
from simulator.report import build_report
from simulator.runner import SimOptions, simulate

POLICIES = ("static-peak", "reactive", "predictive", "oracle")
TraceOf = Callable[..., Trace]
PoolOf = Callable[..., PoolModel]


def reports(trace: Trace, pools: list[Any], seed: int) -> list[dict[str, Any]]:
    results = run_policies(
        trace,
        pools,
        PolicyConfig(),
        POLICIES,
        options=SimOptions(seed=seed),
        forecast_factory=default_forecast_factory,
    )
    return [build_report(r) for r in results]


def without_wall_time(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "wall_s"}


@pytest.fixture(scope="module")
def window_trace(openb_window: Path) -> Trace:
    with openb_window.open(newline="") as fh:
        return parse_trace(fh, source=str(openb_window))


@pytest.fixture(scope="module")
def random_pools(pool_of: PoolOf) -> list[Any]:
    """Boot delays drawn from distributions and nodes that fail to boot."""
    return [
        pool_of(
            "lognormal",
            simulation={"delayDistribution": "lognormal", "bootFailureRate": 0.2},
        ),
        pool_of(
            "uniform",
            gpusPerNode=4,
            pricePerHour=5.0,
            simulation={"delayDistribution": "uniform", "bootFailureRate": 0.1},
        ),
    ]


def test_two_runs_give_identical_reports_except_wall_time(
    window_trace: Trace, random_pools: list[Any]
) -> None:
    first = reports(window_trace, random_pools, seed=7)
    second = reports(window_trace, random_pools, seed=7)
    assert [r["policy"] for r in first] == list(POLICIES)
    assert [without_wall_time(r) for r in first] == [without_wall_time(r) for r in second]
    # The runs really were random: boot failures happened.
    assert sum(p["boot_failures"] for r in first for p in r["pools"]) > 0


def test_another_seed_gives_another_run(window_trace: Trace, random_pools: list[Any]) -> None:
    a = reports(window_trace, random_pools, seed=7)
    b = reports(window_trace, random_pools, seed=8)
    assert [r["gpu_hours"]["provisioned"] for r in a] != [r["gpu_hours"]["provisioned"] for r in b]


@pytest.mark.parametrize("policy", POLICIES)
def test_gpu_hours_used_equal_the_demand_of_completed_jobs(
    policy: str, window_trace: Trace, random_pools: list[Any]
) -> None:
    [result] = run_policies(
        window_trace,
        random_pools,
        PolicyConfig(),
        [policy],
        options=SimOptions(seed=3),
        forecast_factory=default_forecast_factory,
    )
    completed = [r for r in result.jobs if r.end_s is not None]
    assert len(completed) == len(window_trace.jobs)  # every job of the slice runs
    for r in completed:
        assert r.start_s is not None and r.end_s is not None
        assert r.start_s >= r.gang.submit_s
        assert r.end_s - r.start_s == pytest.approx(r.gang.duration_s)
    report = build_report(result)
    demand_h = sum(j.total_gpus * (j.duration_s or 0.0) for j in window_trace.jobs) / 3600
    assert report["gpu_hours"]["used"] == pytest.approx(demand_h, rel=1e-9)
    assert report["gpu_hours"]["demanded"] == pytest.approx(window_trace.gpu_hours, rel=1e-9)
    g = report["gpu_hours"]
    assert g["provisioned"] >= g["used"] > 0
    assert g["idle"] == pytest.approx(g["provisioned"] - g["used"])


def test_an_unschedulable_job_is_demand_that_is_never_used(
    trace_of: TraceOf, pool_of: PoolOf
) -> None:
    # j1 asks for a GPU type no pool offers; j0 and j2 run.
    trace = trace_of([(0, 100, 8, ""), (10, 500, 4, "h100"), (20, 200, 2, "")], columns="gpu_type")
    result = simulate(trace, [pool_of()], PolicyConfig(policy="reactive"))
    report = build_report(result)
    assert report["jobs"] == {
        "total": 3,
        "completed": 2,
        "unfinished": 1,
        "never_started": 1,
        "unschedulable": 1,
    }
    # used = 8 GPUs x 100 s + 2 GPUs x 200 s = 1200 GPU-s; demanded adds 4 x 500 = 2000.
    assert report["gpu_hours"]["used"] == pytest.approx(1200 / 3600)
    assert report["gpu_hours"]["demanded"] == pytest.approx(3200 / 3600)
    assert "no pool offers GPU type 'h100'" in result.unschedulable["j1"]


@pytest.mark.parametrize(
    ("policy", "billed_node_s", "scale_events"),
    [
        # Asked for at 0, ready at 300, runs 300..1300, removed 600 s idle later: 1900 s.
        ("reactive", 1900.0, 2),
        # Removed as soon as the job ends (nothing else is coming): 1300 s.
        ("oracle", 1300.0, 2),
        # Never removed; the run ends at the first tick after the job (ticks every 60 s
        # from 0: 1320 s).
        ("static-peak", 1320.0, 1),
    ],
)
def test_one_job_report_by_hand(
    policy: str, billed_node_s: float, scale_events: int, trace_of: TraceOf, pool_of: PoolOf
) -> None:
    trace = trace_of([(0, 1000, 8)])
    cold = SimOptions(warm_start=False)  # the job boots its node, as a later job would
    [result] = run_policies(trace, [pool_of()], PolicyConfig(), [policy], options=cold)
    report = build_report(result)
    assert report["policy"] == policy
    assert report["jobs"]["completed"] == 1
    assert report["wait_s"]["mean"] == report["wait_s"]["p99"] == 300.0  # one boot
    # 8 GPUs x 1000 s used; 8 GPUs x billed node-seconds provisioned; 8 USD per node-hour.
    assert report["gpu_hours"]["used"] == pytest.approx(8000 / 3600)
    assert report["gpu_hours"]["provisioned"] == pytest.approx(8 * billed_node_s / 3600)
    assert report["utilization"] == pytest.approx(1000 / billed_node_s)
    assert report["cost_usd"] == pytest.approx(8.0 * billed_node_s / 3600)
    assert report["scale_events"] == scale_events
    assert math.isfinite(report["wall_s"]) and report["wall_s"] >= 0
