"""Metrics of a simulation run: the report dict (``report.json``) and the comparison table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dlscaler.config import policy_config_to_dict
from simulator.runner import SimResult


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    arr = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "mean": float(arr.mean()),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(arr.max()),
    }


def gpu_seconds_used(result: SimResult) -> float:
    """GPU-seconds of work the jobs actually ran (partial for jobs still running at the end)."""
    total = 0.0
    for r in result.jobs:
        if r.start_s is None:
            continue
        end = r.end_s if r.end_s is not None else result.end_s
        total += r.gang.total_gpus * (end - r.start_s)
    return total


def build_report(result: SimResult) -> dict[str, Any]:
    jobs = result.jobs
    completed = sum(1 for r in jobs if r.end_s is not None)
    started = [r for r in jobs if r.start_s is not None]
    waits = [r.start_s - r.gang.submit_s for r in started if r.start_s is not None]
    demanded_s = sum(r.gang.total_gpus * (r.gang.duration_s or 0.0) for r in jobs)
    used_s = gpu_seconds_used(result)
    provisioned_s = 0.0
    cost = 0.0
    pools: list[dict[str, Any]] = []
    for pool in result.pools:
        node_s = pool.billed_node_seconds(result.end_s)
        provisioned_s += node_s * pool.spec.gpus_per_node
        pool_cost = node_s / 3600.0 * pool.spec.price_usd_per_hour
        cost += pool_cost
        pools.append(
            {
                "name": pool.spec.name,
                "node_hours": node_s / 3600.0,
                "cost_usd": pool_cost,
                "scale_ups": pool.scale_ups,
                "removals": pool.removals,
                "boot_failures": pool.boot_failures,
            }
        )
    utilization = used_s / provisioned_s if provisioned_s > 0 else 0.0
    return {
        "policy": result.policy,
        "jobs": {
            "total": len(jobs),
            "completed": completed,
            "unfinished": len(jobs) - completed,
            "never_started": len(jobs) - len(started),
            "unschedulable": len(result.unschedulable),
        },
        "gpu_hours": {
            "demanded": demanded_s / 3600.0,
            "used": used_s / 3600.0,
            "provisioned": provisioned_s / 3600.0,
            "idle": (provisioned_s - used_s) / 3600.0,
        },
        "utilization": utilization,
        "cost_usd": cost,
        "wait_s": _percentiles(waits),
        "scale_events": result.scale_events,
        "sim_events": result.sim_events,
        "decisions": result.decisions,
        "forecast_fallbacks": result.fallbacks,
        "sim_span_s": result.end_s - (result.trace.jobs[0].submit_s if result.trace.jobs else 0.0),
        "pools": pools,
        "config": policy_config_to_dict(result.config),
        "unschedulable_examples": dict(list(result.unschedulable.items())[:10]),
        "first_decisions": result.reasons[:20],
        "wall_s": result.wall_s,
    }


def _fmt_s(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


TABLE_COLUMNS: tuple[str, ...] = (
    "policy",
    "cost USD",
    "GPU-h provisioned",
    "GPU-h used",
    "GPU-h idle",
    "util",
    "wait p50",
    "wait p95",
    "wait p99",
    "done/total",
    "scale events",
)


def table_rows(reports: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in reports:
        g = r["gpu_hours"]
        w = r["wait_s"]
        rows.append(
            [
                r["policy"],
                f"{r['cost_usd']:,.0f}",
                f"{g['provisioned']:,.0f}",
                f"{g['used']:,.0f}",
                f"{g['idle']:,.0f}",
                f"{r['utilization']:.1%}",
                _fmt_s(w["p50"]),
                _fmt_s(w["p95"]),
                _fmt_s(w["p99"]),
                f"{r['jobs']['completed']}/{r['jobs']['total']}",
                str(r["scale_events"]),
            ]
        )
    return rows
