"""Policies side by side, same pools and seed per trace: ``benchmarks/results/policy.json``.

The default pool throughout (8 GPUs per node, 5-minute provisioning, 32.77 USD/h):

- the bundled trace: static-peak, reactive, predictive with its defaults, predictive with
  the tuned configuration (``benchmarks/tuned-predictive.yaml``, written by
  ``dlscaler tune``) and oracle; the top level of the JSON (``trace``, ``reports``);
- under ``traces``, two more with the defaults only (reactive, predictive, oracle): the
  serving trace ``../shared/data/alibaba_dlrm_2025_instances.csv`` when present (a real
  trace that played no part in choosing the defaults), and a synthetic one
  (``dlscaler gen-trace --jobs 8000 --days 14 --seed 1``: diurnal, bursty, gangs up to 8x8).

Each trace also gets the no-wait repacking bound (``simulator.bounds``) and a verdict on the
issue's rule: predictive *dominates* reactive when its p95 wait is at least 30% lower at no
more than 5% more cost, or its cost at least 10% lower at no worse p95 wait. Under
``targets``, what the trace allows any policy: whether reactive has a p95 wait to cut, and
the wait that some job must exceed in every policy 10% cheaper than reactive
(``simulator.bounds.wait_needed``), next to reactive's own longest wait.

    python benchmarks/policy_bench.py [--trace PATH] [--tuned PATH] [--jobs N]
"""

from __future__ import annotations

import argparse
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result

from dlscaler.config import (
    DEFAULT_POOL,
    PolicyConfig,
    parse_policy_config,
    policy_config_to_dict,
)
from dlscaler.policy.forecast_needs import lead_time_s
from dlscaler.trace import Trace, parse_trace
from simulator.bounds import no_wait_bound, wait_needed
from simulator.compare import config_for
from simulator.forecasting import default_forecast_factory
from simulator.report import build_report
from simulator.runner import SimOptions, simulate
from simulator.synth import SynthSpec, generate, to_csv

ROOT = Path(__file__).resolve().parent.parent
SERVING = ROOT.parent / "shared/data/alibaba_dlrm_2025_instances.csv"
SYNTH = SynthSpec(jobs=8000, days=14.0, seed=1)
POOLS = [DEFAULT_POOL]


def load(name: str) -> Trace:
    if name == "synthetic":
        text = to_csv(generate(SYNTH))
        return parse_trace(
            text.splitlines(),
            source=f"synthetic (gen-trace --jobs {SYNTH.jobs} --days {SYNTH.days:g} "
            f"--seed {SYNTH.seed})",
        )
    path = Path(name)
    with path.open(newline="") as fh:
        if path.is_relative_to(ROOT):
            source = str(path.relative_to(ROOT))
        elif path.is_relative_to(ROOT.parent):
            source = "../" + str(path.relative_to(ROOT.parent))
        else:
            source = str(path)
        return parse_trace(fh, source=source)


def run_one(job: tuple[str, str, dict[str, Any], int]) -> dict[str, Any]:
    trace_name, label, given_dict, seed = job  # a dict: configs hold mapping proxies
    given = parse_policy_config(given_dict, source=label)
    trace = load(trace_name)
    cfg = config_for(given.policy, given, trace, POOLS)
    source = (
        default_forecast_factory(cfg, lead_time_s(cfg, POOLS))
        if cfg.policy == "predictive"
        else None
    )
    result = simulate(trace, POOLS, cfg, options=SimOptions(seed=seed), forecast_source=source)
    report = build_report(result) | {"label": label}
    w = report["wait_s"]
    print(
        f"{trace.source[:40]:>40} {label:>20}: cost {report['cost_usd']:>12,.0f} USD  "
        f"wait p95 {w['p95']:>5.0f}s p99 {w['p99']:>5.0f}s  util {report['utilization']:.1%}",
        file=sys.stderr,
    )
    return report


def verdict(reports: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["label"]: r for r in reports}
    out: dict[str, Any] = {}
    for label in [lbl for lbl in by if lbl.startswith("predictive")]:
        p, r = by[label], by["reactive"]
        cost_ratio = p["cost_usd"] / r["cost_usd"]
        rp95, pp95 = r["wait_s"]["p95"], p["wait_s"]["p95"]
        wait_cut = (rp95 - pp95) / rp95 if rp95 > 0 else 0.0
        out[label] = {
            "cost_vs_reactive": cost_ratio - 1.0,
            "p95_wait_cut": wait_cut,
            "p99_wait_s": [r["wait_s"]["p99"], p["wait_s"]["p99"]],
            "dominates": (wait_cut >= 0.3 and cost_ratio <= 1.05)
            or (cost_ratio <= 0.9 and pp95 <= rp95),
        }
    return out


def targets(trace: Trace, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """What the dominance rule asks of any policy on this trace, against the bounds."""
    reactive = next(r for r in reports if r["label"] == "reactive")
    cost_target = 0.9 * reactive["cost_usd"]
    wait = wait_needed(trace, POOLS, cost_target)
    return {
        "reactive_p95_wait_s": reactive["wait_s"]["p95"],
        "p95_cut_possible": reactive["wait_s"]["p95"] > 0,
        "cost_target_usd": cost_target,
        "reactive_longest_wait_s": reactive["wait_s"]["max"],
        "wait_some_job_must_exceed_s": (
            None if wait is None else ("inf" if math.isinf(wait) else wait)
        ),
        "meaning": "every policy that costs at most cost_target_usd makes some job wait "
        "longer than wait_some_job_must_exceed_s (null: the bounds allow it without waits)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=ROOT / "data/alibaba_openb_2023_jobs.csv")
    parser.add_argument("--tuned", type=Path, default=ROOT / "benchmarks/tuned-predictive.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="Parallel simulations.")
    parser.add_argument("--out", default="policy.json")
    args = parser.parse_args()

    main_runs: list[tuple[str, PolicyConfig]] = [
        ("static-peak", PolicyConfig(policy="static-peak")),
        ("reactive", PolicyConfig(policy="reactive")),
        ("predictive", PolicyConfig(policy="predictive")),
    ]
    if args.tuned.exists():
        tuned = parse_policy_config(yaml.safe_load(args.tuned.read_text()), source=str(args.tuned))
        main_runs.append(("predictive (tuned)", replace(tuned, policy="predictive")))
    main_runs.append(("oracle", PolicyConfig(policy="oracle")))
    defaults = [(p, PolicyConfig(policy=p)) for p in ("reactive", "predictive", "oracle")]
    traces = {str(args.trace): main_runs, "synthetic": defaults}
    if SERVING.exists():
        traces[str(SERVING)] = defaults

    jobs = [
        (t, label, policy_config_to_dict(cfg), args.seed)
        for t, runs in traces.items()
        for label, cfg in runs
    ]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        reports = list(pool.map(run_one, jobs))
    sections: list[dict[str, Any]] = []
    for name in traces:
        trace = load(name)
        mine = [r for (t, *_), r in zip(jobs, reports, strict=True) if t == name]
        sections.append(
            {
                "trace": trace.source,
                "jobs": len(trace.jobs),
                "bound": no_wait_bound(trace, POOLS).as_dict(),
                "verdict": verdict(mine),
                "targets": targets(trace, mine),
                "reports": mine,
            }
        )
    main_section, others = sections[0], sections[1:]
    write_result(
        args.out,
        {
            "trace": main_section["trace"],
            "pools": [DEFAULT_POOL.model_dump(by_alias=True, exclude_defaults=True)],
            "seed": args.seed,
            "bound": main_section["bound"],
            "verdict": main_section["verdict"],
            "targets": main_section["targets"],
            "reports": main_section["reports"],
            "traces": others,
        },
    )
    for s in sections:
        t = s["targets"]
        wait = t["wait_some_job_must_exceed_s"]
        needs = (
            "no wait the bounds can show"
            if wait is None
            else f"some job to wait over {wait if isinstance(wait, str) else f'{wait:.0f}'} s"
        )
        print(
            f"{s['trace'][:40]:>40} 10% cheaper than reactive needs {needs} (reactive's "
            f"longest wait: {t['reactive_longest_wait_s']:.0f} s); p95 cut possible: "
            f"{t['p95_cut_possible']}",
            file=sys.stderr,
        )
        for label, v in s["verdict"].items():
            print(
                f"{s['trace'][:40]:>40} {label}: cost {v['cost_vs_reactive']:+.2%}, "
                f"p95 wait {-v['p95_wait_cut']:+.0%}, dominates: {v['dominates']}",
                file=sys.stderr,
            )


if __name__ == "__main__":
    main()
