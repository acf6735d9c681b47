"""Backtest results as the ``forecast.json`` document, a table, and a plot."""

from __future__ import annotations

import os
import platform
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from predictors.backtest import BacktestResult
from predictors.registry import AUTO, QUANTILE_BASELINE

TABLE_COLUMNS = (
    "model",
    "MAE",
    "MAE / best naive",
    "p90 pinball",
    "/ naive quantiles",
    "p90 coverage",
    "fit s",
    "predict ms",
)


def machine_info() -> dict[str, Any]:
    """Cores, memory and Python version: results are only comparable on like machines."""
    memory_gb = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    memory_gb = round(int(line.split()[1]) / 1024**2, 1)
                    break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def choice_counts(result: BacktestResult, model: str = AUTO) -> Counter[str]:
    return Counter(c for key, c in result.chosen.items() if key.startswith(f"{model}@"))


def chosen_model(result: BacktestResult) -> str:
    """The automatic choice most often made in the backtest; without ``auto``, the model
    with the lowest p90 pinball loss."""
    counts = choice_counts(result)
    if counts:
        return counts.most_common(1)[0][0]
    return min(result.scores, key=lambda name: result.scores[name].pinball_p90)


def document(
    result: BacktestResult, trace: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "trace": trace,
        "step_s": result.step_s,
        "horizon_s": result.step_s * result.horizon,
        "origins": len(result.origins),
        "first_origin_s": float(result.origins[0] * result.step_s),
        "models": result.table(),
        "chosen": chosen_model(result),
        "chosen_counts": dict(choice_counts(result).most_common()),
        "best_point_baseline": result.best_point_baseline(),
        "quantile_baseline": QUANTILE_BASELINE,
    }
    doc.update(extra or {})
    doc["machine"] = machine_info()
    return doc


def table_rows(result: BacktestResult) -> list[list[str]]:
    rows = []
    for name, s in result.scores.items():
        rel_mae, rel_pinball = result.relative(name)
        rows.append(
            [
                name,
                f"{s.mae:.3f}",
                f"{rel_mae:.3f}",
                f"{s.pinball_p90:.3f}",
                f"{rel_pinball:.3f}",
                f"{s.coverage_p90:.1%}",
                f"{s.fit_s:.3f}",
                f"{s.predict_s * 1000:.1f}",
            ]
        )
    return rows


def plot_backtest(
    result: BacktestResult,
    series_start_s: float,
    model: str,
    path: Path,
    zoom_days: float = 3.0,
) -> Path:
    """Forecast (made ``h`` steps earlier) vs actual demand at each time, with the p10-p90
    band: the whole backtest, and its last ``zoom_days`` up close."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    forecast = result.forecasts[model]
    h = result.horizon
    # The h-step-ahead forecast lands on step origin + h - 1.
    target_s = series_start_s + (result.origins + h - 1) * result.step_s
    days = (target_s - series_start_s) / 86_400.0
    actual = result.actual[:, h - 1]
    low = forecast[min(forecast)][:, h - 1]
    mid = forecast[0.5][:, h - 1]
    high = forecast[0.9][:, h - 1] if 0.9 in forecast else forecast[max(forecast)][:, h - 1]
    fig, axes = plt.subplots(2, 1, figsize=(13, 8), constrained_layout=True)
    zoom = days >= days[-1] - zoom_days
    for ax, keep, title in (
        (axes[0], np.ones_like(zoom), "whole backtest"),
        (axes[1], zoom, f"last {zoom_days:g} days"),
    ):
        ax.fill_between(
            days[keep],
            low[keep],
            high[keep],
            color="tab:blue",
            alpha=0.25,
            step="post",
            label=f"p{round(min(forecast) * 100)}-p90",
            linewidth=0,
        )
        ax.step(days[keep], mid[keep], where="post", color="tab:blue", lw=0.8, label="p50")
        ax.step(days[keep], actual[keep], where="post", color="black", lw=0.8, label="actual")
        ax.set_title(f"{model}: demand {h * result.step_s / 60:g} min ahead, {title}")
        ax.set_xlabel("day of trace")
        ax.set_ylabel("GPUs demanded")
        ax.legend(loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
