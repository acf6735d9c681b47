"""``timeline.png``: demand, forecast and provisioned GPUs over time, and wait times."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlscaler.trace import Trace
from simulator.runner import SimResult


def trace_demand(trace: Trace, t_s: np.ndarray) -> np.ndarray:
    """GPUs demanded at each time if every job started at its submit time."""
    starts = np.array([j.submit_s for j in trace.jobs], dtype=float)
    ends = starts + np.array([j.duration_s or 0.0 for j in trace.jobs], dtype=float)
    gpus = np.array([j.total_gpus for j in trace.jobs], dtype=float)
    return running_level(starts, ends, gpus, t_s)


def running_level(
    starts: np.ndarray, ends: np.ndarray, gpus: np.ndarray, t_s: np.ndarray
) -> np.ndarray:
    """Sum of ``gpus`` over the half-open intervals ``[starts, ends)`` covering each time."""
    order_s, order_e = np.argsort(starts, kind="stable"), np.argsort(ends, kind="stable")
    cum_s = np.concatenate([[0.0], np.cumsum(gpus[order_s])])
    cum_e = np.concatenate([[0.0], np.cumsum(gpus[order_e])])
    started = cum_s[np.searchsorted(starts[order_s], t_s, side="right")]
    ended = cum_e[np.searchsorted(ends[order_e], t_s, side="right")]
    return np.asarray(started - ended)


def plot_timeline(results: Sequence[SimResult], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_wait) = plt.subplots(
        2, 1, figsize=(13, 8), gridspec_kw={"height_ratios": [3, 1.4]}, constrained_layout=True
    )
    longest = max(results, key=lambda r: len(r.timeline.t_s))
    t = np.asarray(longest.timeline.t_s)
    days = t / 86400.0
    ax.fill_between(
        days,
        trace_demand(longest.trace, t),
        step="post",
        color="0.85",
        label="demand (GPUs, if every job started at submit)",
    )
    for r in results:
        tl = r.timeline
        ax.plot(
            np.asarray(tl.t_s) / 86400.0,
            tl.provisioned_gpus,
            drawstyle="steps-post",
            linewidth=0.9,
            label=f"provisioned GPUs: {r.policy}",
        )
        if any(np.isfinite(tl.forecast_p90)):
            ax.plot(
                np.asarray(tl.t_s) / 86400.0,
                tl.forecast_p90,
                linestyle=":",
                linewidth=0.8,
                label=f"forecast p90 (next step): {r.policy}",
            )
    ax.set_xlabel("days since trace start")
    ax.set_ylabel("GPUs")
    ax.set_title(f"{Path(longest.trace.source).name}: demand and provisioned capacity")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)

    for r in results:
        waits = np.sort([j.start_s - j.gang.submit_s for j in r.jobs if j.start_s is not None])
        if len(waits) == 0:
            continue
        frac = np.arange(1, len(waits) + 1) / len(waits)
        ax_wait.plot(np.maximum(waits, 1.0) / 60.0, frac, label=r.policy)
    ax_wait.set_xscale("log")
    ax_wait.set_xlabel("wait before start (minutes, log; waits under 1 s drawn at 1 s)")
    ax_wait.set_ylabel("fraction of jobs")
    ax_wait.set_title("wait-time distribution (CDF)")
    ax_wait.grid(alpha=0.3)
    ax_wait.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pareto(front: Sequence[Any], chosen: Any, path: Path) -> Path:
    """Cost against p95 wait for the Pareto front of a tuning study."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), constrained_layout=True)
    xs = [r.wait_p95_s / 60.0 for r in front]
    ys = [r.cost_usd for r in front]
    ax.plot(xs, ys, marker="o", linestyle="--", label="Pareto front")
    ax.scatter(
        [chosen.wait_p95_s / 60.0],
        [chosen.cost_usd],
        s=140,
        facecolors="none",
        edgecolors="red",
        label=f"chosen (trial {chosen.number})",
    )
    ax.set_xlabel("p95 wait (minutes)")
    ax.set_ylabel("cost (USD)")
    ax.set_title("dlscaler tune: cost vs p95 wait")
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
