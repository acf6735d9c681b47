"""Simulator throughput: a 100,000-job, 75-day synthetic trace through the reactive policy
with a 5-minute decision interval.

Targets: under 20 s wall and 1 GB RSS on 2 cores, and per event no more than 10x a bare
heap loop over the same number of events, timed in this same run (the floor).

    python benchmarks/simulator_throughput.py [--jobs N] [--days D]
"""

from __future__ import annotations

import argparse
import heapq
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import peak_rss_mb, write_result

from dlscaler.config import DEFAULT_POOL, PolicyConfig
from dlscaler.trace import parse_trace
from simulator.runner import SimOptions, simulate
from simulator.synth import SynthSpec, generate, to_csv


def bare_heap_loop(events: int) -> float:
    """Push then pop ``events`` (time, rank, seq, payload) tuples: the floor of any DES."""
    started = time.perf_counter()
    heap: list[tuple[float, int, int, object]] = []
    for i in range(events):
        heapq.heappush(heap, (float((i * 7919) % events), i % 5, i, None))
    while heap:
        heapq.heappop(heap)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=75.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    text = to_csv(generate(SynthSpec(jobs=args.jobs, days=args.days, seed=args.seed)))
    trace = parse_trace(text.splitlines(), source=f"synthetic-{args.jobs}-jobs-{args.days:g}-days")
    config = PolicyConfig(policy="reactive", decision_interval_s=300.0)
    options = SimOptions(seed=args.seed, decision_interval_s=300.0, decide_on_events=False)
    result = simulate(trace, [DEFAULT_POOL], config, options=options)
    events = result.sim_events
    floor_s = min(bare_heap_loop(events) for _ in range(3))
    events_per_s = events / result.wall_s
    baseline_events_per_s = events / floor_s
    out = {
        "jobs": len(trace.jobs),
        "days": args.days,
        "policy": "reactive",
        "decision_interval_s": 300.0,
        "events": events,
        "decisions": result.decisions,
        "wall_s": round(result.wall_s, 3),
        "events_per_s": round(events_per_s),
        "baseline_events_per_s": round(baseline_events_per_s),
        "slowdown_vs_bare_heap": round(baseline_events_per_s / events_per_s, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "targets": {"wall_s": 20.0, "peak_rss_mb": 1024.0, "slowdown_vs_bare_heap": 10.0},
    }
    print(
        f"{events} events in {result.wall_s:.2f} s ({events_per_s:,.0f}/s); "
        f"bare heap loop {baseline_events_per_s:,.0f}/s (floor); "
        f"slowdown {out['slowdown_vs_bare_heap']}x; peak RSS {out['peak_rss_mb']} MB"
    )
    write_result("simulator_throughput.json", out)


if __name__ == "__main__":
    main()
