"""Demand forecasters: rolling-origin backtests at a 1-hour horizon, and refit/predict times.

Backtests (5-minute steps, 1-hour horizon, refit daily, every origin):

- the bundled trace (``data/alibaba_openb_2023_jobs.csv``) from day 115 on: the top-level
  result. 7,041 of its 7,063 jobs arrive in these last 35 days; the first 115 days hold
  only the 22 long-running pods that survived until the trace was taken, a flat series;
- the same trace over its whole span after a 14-day warm-up (the ``dlscaler forecast``
  defaults). On the flat stretch every forecast equals the actual value, and a tie counts
  as covered, so p90 coverage there is near 100% by construction; it is reported, but it
  says nothing about calibration;
- the serving trace (``../shared/data/alibaba_dlrm_2025_instances.csv``, ``DLService``
  demand) after a 7-day warm-up, when present.

Timing, on 90 days of 5-minute history from the bundled trace (its last 90 days): each
model's fit and one ``predict``, the automatic chooser's full fit (backtest of every
candidate, then refit of the chosen ones) and one ``forecast()``. Medians of a few runs,
after a warm-up run that pays for the imports.

Targets: on the bundled trace, the automatic choice's MAE <= the best naive baseline's and
its p90 pinball <= naive quantiles' (aim: <= 0.9), p90 coverage 85-95%; a refit on 90 days
under 2 s, a predict under 50 ms.

    python benchmarks/forecast_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result

from dlscaler.trace import parse_trace
from predictors.auto import AutoForecaster
from predictors.backtest import backtest
from predictors.base import Series
from predictors.registry import AUTO, CANDIDATES, make_model, model_names
from predictors.report import choice_counts, chosen_model
from predictors.series import demand_series

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "data" / "alibaba_openb_2023_jobs.csv"
SERVING = ROOT.parent / "shared" / "data" / "alibaba_dlrm_2025_instances.csv"
STEP_S = 300.0
HORIZON_S = 3_600.0
DAY = int(86_400 / STEP_S)


def load(path: Path) -> Series:
    with path.open(newline="") as fh:
        trace = parse_trace(fh, source=str(path))
    return demand_series(trace.jobs, STEP_S)


def run(name: str, path: Path, series: Series, first_day: int, stride: int) -> dict[str, Any]:
    h = series.steps(HORIZON_S)
    factories = {m: (lambda hh, qs, m=m: make_model(m, hh, qs)) for m in model_names()}
    began = time.perf_counter()

    def progress(model: str, done: int, total: int) -> None:
        if done == total:
            print(f"  {name}: {model} done ({time.perf_counter() - began:.0f}s)", file=sys.stderr)

    result = backtest(
        factories, series, h, first_origin=first_day * DAY, stride=stride, progress=progress
    )
    return {
        "name": name,
        "trace": os.path.relpath(path, ROOT),
        "first_origin_day": first_day,
        "origins": len(result.origins),
        "step_s": STEP_S,
        "horizon_s": HORIZON_S,
        "models": result.table(),
        "chosen": chosen_model(result),
        "chosen_counts": dict(choice_counts(result).most_common()),
        "best_point_baseline": result.best_point_baseline(),
    }


def median_time(fn: Any, repeats: int) -> float:
    fn()  # warm-up: imports, caches
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def timings(series: Series, repeats: int) -> dict[str, Any]:
    history = series.tail(90 * DAY)
    h = history.steps(HORIZON_S)
    qs = (0.1, 0.5, 0.9)
    out: dict[str, Any] = {"history_points": len(history), "history_days": 90, "models": {}}
    for name in CANDIDATES:
        model = make_model(name, h, qs)
        fit_s = median_time(lambda model=model: model.fit(history), repeats)
        predict_s = median_time(lambda model=model: model.predict(h, qs), 20)
        out["models"][name] = {"fit_s": round(fit_s, 4), "predict_s": round(predict_s, 5)}
    auto = AutoForecaster(horizon_s=HORIZON_S, quantiles=qs)
    fit_s = median_time(lambda: auto.fit(history), repeats)
    forecast_s = median_time(auto.forecast, 20)
    chosen = auto.chosen
    refit = (
        {name: out["models"][name]["fit_s"] for name in auto._model.models} if auto._model else {}
    )
    out["models"][AUTO] = {
        "fit_s": round(fit_s, 4),
        "predict_s": round(forecast_s, 5),
        "chosen": chosen,
        "refit_chosen_s": round(sum(refit.values()), 4),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="Every 6th origin only (for a smoke run)."
    )
    args = parser.parse_args()
    stride = 6 if args.quick else 1

    bundled = load(BUNDLED)
    print("backtests (this takes a few minutes)", file=sys.stderr)
    runs = [
        run("bundled, active window (day 115 on)", BUNDLED, bundled, 115, stride),
        run("bundled, whole trace", BUNDLED, bundled, 14, stride),
    ]
    if SERVING.exists():
        runs.append(run("serving (DLService)", SERVING, load(SERVING), 7, stride))
    print("timings on 90 days of history", file=sys.stderr)
    timing = timings(bundled, repeats=3)
    main_run = runs[0]
    write_result(
        "forecast.json",
        {
            "trace": main_run["trace"],
            "headline_run": main_run["name"],
            "step_s": STEP_S,
            "horizon_s": HORIZON_S,
            "models": main_run["models"],
            "chosen": main_run["chosen"],
            "refit_90d": timing,
            "runs": runs,
            "quick": args.quick,
        },
    )
    for r in runs:
        auto = r["models"][AUTO]
        print(
            f"{r['name']}: auto rel_mae {auto['rel_mae']:.3f} rel_pinball_p90 "
            f"{auto['rel_pinball_p90']:.3f} coverage_p90 {auto['coverage_p90']:.1%}",
            file=sys.stderr,
        )
    auto_t = timing["models"][AUTO]
    print(
        f"90 days: auto fit {auto_t['fit_s']:.2f}s "
        f"(refit of chosen {auto_t['refit_chosen_s']:.2f}s), "
        f"forecast {auto_t['predict_s'] * 1000:.1f} ms",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
