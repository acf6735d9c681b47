"""Synthetic traces with the shape of real GPU clusters, for tests, demos and benchmarks.

Arrivals are a non-homogeneous Poisson process (a daily cycle peaking mid-afternoon, quieter
weekends) with bursts (a user submitting a sweep); durations are heavy-tailed (lognormal
body, Pareto tail); gang sizes are mostly one GPU with a long tail of multi-node jobs.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

DAY_S = 86_400.0
GANG_GPUS = np.array([1, 2, 4, 8, 16, 32, 64])
GANG_WEIGHTS = np.array([0.62, 0.12, 0.10, 0.10, 0.035, 0.02, 0.005])


@dataclass(frozen=True, slots=True)
class SynthSpec:
    jobs: int = 10_000
    days: float = 30.0
    seed: int = 0
    daily_amplitude: float = 0.6
    weekend_factor: float = 0.5
    burst_fraction: float = 0.15
    """Share of jobs that arrive in bursts (sweeps of similar jobs within minutes)."""
    median_duration_s: float = 1800.0
    duration_sigma: float = 1.4
    tail_fraction: float = 0.05
    """Share of jobs whose duration comes from a Pareto tail (days-long training runs)."""
    gpu_types: tuple[str, ...] = ()
    queues: tuple[str, ...] = ("research", "prod", "batch")


def _intensity(t: np.ndarray, spec: SynthSpec) -> np.ndarray:
    day_phase = (t % DAY_S) / DAY_S
    daily = 1.0 + spec.daily_amplitude * np.sin(2 * np.pi * (day_phase - 0.375))
    weekday = (t // DAY_S) % 7
    weekly = np.where(weekday >= 5, spec.weekend_factor, 1.0)
    return np.asarray(daily * weekly)


def generate(spec: SynthSpec) -> list[dict[str, object]]:
    rng = np.random.default_rng(spec.seed)
    span = spec.days * DAY_S
    n_burst_jobs = int(spec.jobs * spec.burst_fraction)
    n_single = spec.jobs - n_burst_jobs
    peak = 1.0 + spec.daily_amplitude
    times: list[np.ndarray] = []
    accepted = 0
    while accepted < n_single:  # thinning: accept with probability intensity / peak
        cand = rng.uniform(0, span, size=max(1024, 2 * (n_single - accepted)))
        keep = cand[rng.uniform(0, peak, size=cand.size) < _intensity(cand, spec)]
        keep = keep[: n_single - accepted]
        times.append(keep)
        accepted += keep.size
    single_times = np.concatenate(times) if times else np.empty(0)
    burst_times = np.empty(0)
    if n_burst_jobs:
        n_bursts = max(1, n_burst_jobs // 20)
        centres = rng.uniform(0, span, size=n_bursts)
        which = rng.integers(0, n_bursts, size=n_burst_jobs)
        burst_times = np.clip(centres[which] + rng.exponential(120.0, size=n_burst_jobs), 0, span)
    submit = np.sort(np.concatenate([single_times, burst_times]))
    n = submit.size
    body = rng.lognormal(np.log(spec.median_duration_s), spec.duration_sigma, size=n)
    tail = spec.median_duration_s * 10 * (1 + rng.pareto(1.3, size=n))
    duration = np.where(rng.uniform(size=n) < spec.tail_fraction, tail, body)
    duration = np.clip(duration, 30.0, 30 * DAY_S).round()
    gpus = rng.choice(GANG_GPUS, size=n, p=GANG_WEIGHTS / GANG_WEIGHTS.sum())
    queue = rng.choice(np.array(spec.queues), size=n) if spec.queues else np.array([""] * n)
    priority = rng.choice(np.array([0, 0, 0, 1, 2]), size=n)
    gpu_type = rng.choice(np.array(spec.gpu_types), size=n) if spec.gpu_types else None
    rows: list[dict[str, object]] = []
    for i in range(n):
        rows.append(
            {
                "job_id": f"synth-{i:07d}",
                "submit_s": int(submit[i]),
                "duration_s": int(duration[i]),
                "num_gpus": int(gpus[i]),
                "gpu_type": "" if gpu_type is None else str(gpu_type[i]),
                "priority": int(priority[i]),
                "queue": str(queue[i]),
            }
        )
    return rows


def to_csv(rows: list[dict[str, object]]) -> str:
    buf = io.StringIO()
    fields = ["job_id", "submit_s", "duration_s", "num_gpus", "gpu_type", "priority", "queue"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
