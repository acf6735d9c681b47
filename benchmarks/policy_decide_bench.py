"""The cost of one ``predictive`` decision with arrival scenarios, against ``reactive`` on the
same snapshot in the same run: ``benchmarks/results/policy_decide.json``.

A large cluster's snapshot, built from a fixed seed: 1,300 nodes of 8 GPUs (most of them
busy, some partly used, ``--idle`` empty and past their idle timeout, a few in flight), 20
pending gangs and 115 arrival scenarios of 100 gangs (the windows of a week at the same time
of day, and the last two hours), shaped like training traffic (mostly 1-8 GPU jobs, some
2x8 and 4x8 gangs). Two cases:

- ``one-pool``: all nodes in one pool of any GPU type (as the bundled-trace benchmarks);
- ``three-pools``: the same nodes spread over a cheap and a dear pool of any GPU type and
  an A100 pool, with a tenth of the scenario gangs asking for A100s.

Each decision is timed ``--repeat`` times, alternating policies so a noisy neighbour hits
both alike; the result is the median. ``predictive_vs_reactive`` (the ratio of medians) is
the number to compare across machines and changes; the milliseconds are this machine's.

    python benchmarks/policy_decide_bench.py [--repeat 30] [--nodes 1300] [--scenarios 115]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result

from dlscaler.config import PolicyConfig, PredictiveParams
from dlscaler.model import (
    Forecast,
    Gang,
    NodePhase,
    NodeState,
    PoolSpec,
    PoolState,
    RunningGang,
)
from dlscaler.policy import decide

NOW_S = 30 * 86_400.0
SHAPES: tuple[tuple[int, int, float], ...] = (
    # (workers, GPUs per worker, weight): mostly small jobs, some whole-node gangs
    (1, 1, 0.45),
    (1, 2, 0.12),
    (1, 4, 0.12),
    (1, 8, 0.18),
    (2, 8, 0.08),
    (4, 8, 0.04),
    (2, 4, 0.01),
)


def draw_shape(rng: random.Random) -> tuple[int, int]:
    workers, gpus, _ = rng.choices(SHAPES, weights=[s[2] for s in SHAPES])[0]
    return workers, gpus


def pool_specs(case: str) -> list[PoolSpec]:
    if case == "one-pool":
        return [PoolSpec("default", 8, 10_000, 32.77)]
    return [
        PoolSpec("cheap", 8, 10_000, 24.0),
        PoolSpec("dear", 8, 10_000, 32.77),
        PoolSpec("a100", 8, 10_000, 40.0, gpu_type="a100"),
    ]


def snapshot(
    case: str, nodes: int, idle: int, scenarios: int, gangs: int, seed: int
) -> tuple[list[PoolState], list[Gang], list[RunningGang], Forecast]:
    rng = random.Random(seed)
    specs = pool_specs(case)
    per_pool: dict[str, list[NodeState]] = {s.name: [] for s in specs}
    running: list[RunningGang] = []
    for i in range(nodes):
        spec = specs[i % len(specs)]
        name = f"{spec.name}-n{i}"
        roll = rng.random()
        if i < idle:
            node = NodeState(name, NodePhase.READY, 8, idle_since_s=NOW_S - 3_600.0 - i)
        elif roll < 0.02:
            node = NodeState(name, NodePhase.IN_FLIGHT, 8, created_s=NOW_S - 60.0)
        else:
            used = 8 if roll < 0.6 else rng.randint(1, 7)
            node = NodeState(name, NodePhase.READY, 8, used_gpus=used, created_s=0.0)
            job = Gang(f"run-{i}", NOW_S - 7_200.0, 1, used, gpu_type=spec.gpu_type)
            running.append(RunningGang(job, NOW_S - 7_000.0, spec.name, (name,)))
        per_pool[spec.name].append(node)
    pools = [PoolState(spec=s, nodes=tuple(per_pool[s.name])) for s in specs]

    def gang(job_id: str, submit_s: float) -> Gang:
        workers, gpus = draw_shape(rng)
        typed = case != "one-pool" and rng.random() < 0.1
        return Gang(job_id, submit_s, workers, gpus, gpu_type="a100" if typed else "")

    pending = [gang(f"pending-{j}", NOW_S - 30.0) for j in range(20)]
    windows = tuple(
        tuple(gang(f"s{k}-{j}", NOW_S - 86_400.0 + j) for j in range(gangs))
        for k in range(scenarios)
    )
    steps = 40
    forecast = Forecast(
        start_s=NOW_S,
        step_s=300.0,
        quantiles=MappingProxyType(
            # demand below capacity: the forecast itself asks for nothing, so the time is
            # the floor's, the room's and the idle nodes'
            {q: (float(nodes * 4),) * steps for q in (0.1, 0.5, 0.9)}
        ),
        model="bench",
        recent_error_ratio=0.5,
        arrival_scenarios=windows,
    )
    return pools, pending, running, forecast


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000.0, 3)


def measure(case: str, args: argparse.Namespace) -> dict[str, Any]:
    pools, pending, running, forecast = snapshot(
        case, args.nodes, args.idle, args.scenarios, args.gangs, args.seed
    )
    configs = {
        "reactive": PolicyConfig(policy="reactive"),
        "predictive": PolicyConfig(policy="predictive", predictive=PredictiveParams()),
        "predictive_no_arrivals": PolicyConfig(
            policy="predictive", predictive=replace(PredictiveParams(), arrival_quantile=0.0)
        ),
    }

    def run(config: PolicyConfig) -> Callable[[], Any]:
        return lambda: decide(
            now=NOW_S,
            pools=pools,
            pending=pending,
            running=running,
            forecast=forecast,
            config=config,
        )

    calls = {name: run(config) for name, config in configs.items()}
    plans = {name: call() for name, call in calls.items()}  # warm up, and keep for the report
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.repeat):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    ms = {name: median_ms(t) for name, t in times.items()}
    predictive = plans["predictive"]
    out = {
        "pools": len(pools),
        "nodes": sum(len(p.nodes) for p in pools),
        "pending_gangs": len(pending),
        "scenarios": len(forecast.arrival_scenarios),
        "gangs_per_scenario": args.gangs,
        "reactive_ms": ms["reactive"],
        "predictive_ms": ms["predictive"],
        "predictive_no_arrivals_ms": ms["predictive_no_arrivals"],
        "predictive_vs_reactive": round(ms["predictive"] / ms["reactive"], 2),
        "arrivals_vs_reactive": round(
            (ms["predictive"] - ms["predictive_no_arrivals"]) / ms["reactive"], 2
        ),
        "predictive_plan": {
            "fell_back": predictive.fell_back,
            "scale_ups": sum(u.added_nodes for u in predictive.scale_ups),
            "removals": len(predictive.removals),
            "removals_reactive": len(plans["reactive"].removals),
        },
    }
    print(
        f"{case}: reactive {ms['reactive']:.1f} ms, predictive {ms['predictive']:.1f} ms "
        f"({out['predictive_vs_reactive']}x), without arrival scenarios "
        f"{ms['predictive_no_arrivals']:.1f} ms",
        file=sys.stderr,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--nodes", type=int, default=1300)
    parser.add_argument("--idle", type=int, default=60, help="empty nodes past the timeout")
    parser.add_argument("--scenarios", type=int, default=115)
    parser.add_argument("--gangs", type=int, default=100, help="gangs per scenario")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    result = {
        "repeat": args.repeat,
        "seed": args.seed,
        "cases": {case: measure(case, args) for case in ("one-pool", "three-pools")},
    }
    if not args.no_write:
        write_result("policy_decide.json", result)


if __name__ == "__main__":
    main()
