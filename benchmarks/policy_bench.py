"""Policies side by side on one trace, same pools and seed: ``benchmarks/results/policy.json``.

Runs static-peak, reactive, predictive with its defaults, predictive with the tuned
configuration (``benchmarks/tuned-predictive.yaml``, written by ``dlscaler tune``), and
oracle, on the bundled trace with the default pool (8 GPUs per node, 5-minute provisioning).

    python benchmarks/policy_bench.py [--trace PATH] [--tuned PATH]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result

from dlscaler.config import DEFAULT_POOL, PolicyConfig, parse_policy_config
from dlscaler.trace import parse_trace
from simulator.bounds import no_wait_bound
from simulator.compare import config_for
from simulator.forecasting import default_forecast_factory, lead_time_s
from simulator.report import build_report
from simulator.runner import SimOptions, simulate

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=ROOT / "data/alibaba_openb_2023_jobs.csv")
    parser.add_argument("--tuned", type=Path, default=ROOT / "benchmarks/tuned-predictive.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="policy.json")
    args = parser.parse_args()

    with args.trace.open(newline="") as fh:
        trace = parse_trace(fh, source=str(args.trace.relative_to(ROOT)))
    pools = [DEFAULT_POOL]
    runs: list[tuple[str, PolicyConfig]] = [
        ("static-peak", PolicyConfig(policy="static-peak")),
        ("reactive", PolicyConfig(policy="reactive")),
        ("predictive", PolicyConfig(policy="predictive")),
    ]
    if args.tuned.exists():
        tuned = parse_policy_config(yaml.safe_load(args.tuned.read_text()), source=str(args.tuned))
        runs.append(("predictive (tuned)", replace(tuned, policy="predictive")))
    runs.append(("oracle", PolicyConfig(policy="oracle")))

    bound = no_wait_bound(trace, pools)
    print(
        f"{'no-wait bound':>20}: cost {bound.cost_usd:>12,.0f} USD  "
        f"({bound.gpu_hours:,.0f} GPU-h: every job at submit, free repacking, instant boots)"
    )
    reports = []
    for label, given in runs:
        cfg = config_for(given.policy, given, trace, pools)
        lead_s = lead_time_s(cfg, pools)
        source = default_forecast_factory(cfg, lead_s) if cfg.policy == "predictive" else None
        result = simulate(
            trace, pools, cfg, options=SimOptions(seed=args.seed), forecast_source=source
        )
        report = build_report(result) | {"label": label}
        reports.append(report)
        w = report["wait_s"]
        print(
            f"{label:>20}: cost {report['cost_usd']:>12,.0f} USD  wait p95 {w['p95']:>7.0f}s "
            f"p99 {w['p99']:>7.0f}s  util {report['utilization']:.1%}  "
            f"fallbacks {report['forecast_fallbacks']}/{report['decisions']}"
        )
    write_result(
        args.out,
        {
            "trace": trace.source,
            "pools": [DEFAULT_POOL.model_dump(by_alias=True, exclude_defaults=True)],
            "seed": args.seed,
            "bound": bound.as_dict(),
            "reports": reports,
        },
    )


if __name__ == "__main__":
    main()
