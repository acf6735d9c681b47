"""Run several policies over one trace with the same pools and seed: what
``dlscaler simulate`` and the policy benchmark do."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from dlscaler.config import PolicyConfig, PoolModel
from dlscaler.model import ANY_GPU_TYPE
from dlscaler.policy.forecast_needs import lead_time_s
from dlscaler.trace import Trace
from simulator.bounds import no_wait_bound
from simulator.plot import trace_demand
from simulator.runner import ForecastSource, ProgressFn, SimOptions, SimResult, simulate

ForecastFactory = Callable[[PolicyConfig, float], ForecastSource | None]
"""A policy config and the lead time (seconds) -> the forecaster for it."""


def static_peak_nodes(trace: Trace, pools: Sequence[PoolModel]) -> dict[str, int]:
    """Nodes per pool for ``static-peak``: each GPU type's peak demand (if every job started
    at its submit time) on the cheapest pool offering that type; any-type demand on the
    cheapest any-type pool."""
    import numpy as np

    by_price = sorted(pools, key=lambda p: (p.price_usd_per_hour / p.gpus_per_node, p.name))
    out: dict[str, int] = {p.name: 0 for p in pools}
    types = sorted({j.gpu_type for j in trace.jobs})
    for gpu_type in types:
        jobs = [j for j in trace.jobs if j.gpu_type == gpu_type]
        target = next((p for p in by_price if gpu_type in (ANY_GPU_TYPE, p.gpu_type)), None)
        if target is None or not jobs:
            continue
        sub = replace(trace, jobs=tuple(jobs))
        times = np.array(sorted({j.submit_s for j in jobs}))
        peak = float(trace_demand(sub, times).max()) if times.size else 0.0
        out[target.name] += math.ceil(peak / target.gpus_per_node)
    return {
        name: min(n, next(p.max_nodes for p in pools if p.name == name)) for name, n in out.items()
    }


def config_for(
    policy: str, base: PolicyConfig, trace: Trace, pools: Sequence[PoolModel]
) -> PolicyConfig:
    cfg = replace(base, policy=policy)
    if policy == "static-peak" and not cfg.static_nodes:
        cfg = replace(cfg, static_nodes=MappingProxyType(static_peak_nodes(trace, pools)))
    return cfg


def run_policies(
    trace: Trace,
    pools: Sequence[PoolModel],
    base: PolicyConfig,
    policies: Sequence[str],
    *,
    options: SimOptions,
    forecast_factory: ForecastFactory | None = None,
    progress: Callable[[str], ProgressFn] | None = None,
) -> list[SimResult]:
    results = []
    for policy in policies:
        cfg = config_for(policy, base, trace, pools)
        source = (
            forecast_factory(cfg, lead_time_s(cfg, pools))
            if forecast_factory and policy == "predictive"
            else None
        )
        results.append(
            simulate(
                trace,
                pools,
                cfg,
                options=options,
                forecast_source=source,
                progress=progress(policy) if progress else None,
            )
        )
    return results


def report_document(
    trace: Trace, pools: Sequence[PoolModel], seed: int, reports: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "trace": trace.source,
        "trace_jobs": len(trace.jobs),
        "trace_skipped_rows": trace.skipped_rows,
        "pools": [
            p.model_dump(by_alias=True, exclude_defaults=True) | {"name": p.name} for p in pools
        ],
        "seed": seed,
        "bound": no_wait_bound(trace, pools).as_dict() if pools else None,
        "reports": list(reports),
    }
