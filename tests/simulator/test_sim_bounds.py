"""The no-wait repacking bound: hand-checked values, and no simulated run whose jobs all
start on time ever provisions less than it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from dlscaler.config import PolicyConfig, PoolModel
from dlscaler.trace import Trace, parse_trace
from simulator.bounds import no_wait_bound
from simulator.compare import config_for
from simulator.report import build_report
from simulator.runner import SimOptions, simulate

TraceOf = Callable[..., Trace]
PoolOf = Callable[..., PoolModel]
HOUR = 3600


@pytest.mark.parametrize(
    ("rows", "gpu_hours"),
    [
        # one 1-GPU job for an hour still needs a whole 8-GPU node for that hour
        ([(0, HOUR, 1)], 8.0),
        # two 4-GPU jobs side by side share one node
        ([(0, HOUR, 4), (0, HOUR, 4)], 8.0),
        # 9 GPUs need two nodes while they overlap (first half hour), then one
        ([(0, HOUR, 8), (0, HOUR / 2, 1)], 16 * 0.5 + 8 * 0.5),
        # a gap between jobs costs nothing
        ([(0, HOUR, 8), (5 * HOUR, HOUR, 8)], 16.0),
        # a 16-GPU gang for two hours
        ([(0, 2 * HOUR, 16)], 32.0),
    ],
)
def test_bound_hand_checked(
    rows: list[tuple[float, float, int]], gpu_hours: float, trace_of: TraceOf, pool_of: PoolOf
) -> None:
    bound = no_wait_bound(trace_of(rows), [pool_of(pricePerHour=16.0)])
    assert bound.node_gpus == 8
    assert bound.gpu_hours == pytest.approx(gpu_hours)
    assert bound.cost_usd == pytest.approx(gpu_hours * 2.0)  # 16 USD/h for 8 GPUs


def test_mixed_node_sizes_drop_the_ceiling(trace_of: TraceOf, pool_of: PoolOf) -> None:
    trace = trace_of([(0, HOUR, 1), (0, HOUR, 2)])
    bound = no_wait_bound(trace, [pool_of("a"), pool_of("b", gpusPerNode=4, pricePerHour=2.0)])
    assert bound.node_gpus == 1
    assert bound.gpu_hours == pytest.approx(3.0)
    assert bound.cost_usd == pytest.approx(3.0 * 0.5)  # the cheapest GPU-hour: pool b


def test_jobs_no_pool_can_run_are_left_out(trace_of: TraceOf, pool_of: PoolOf) -> None:
    trace = trace_of([(0, HOUR, 8, ""), (0, HOUR, 8, "h100")], columns="gpu_type")
    assert no_wait_bound(trace, [pool_of(gpuType="a100")]).gpu_hours == pytest.approx(8.0)


jobs = st.lists(
    st.tuples(
        st.integers(0, 40_000),
        st.integers(60, 30_000),
        st.sampled_from([1, 1, 1, 2, 4, 8, 16]),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(rows=jobs, policy=st.sampled_from(["reactive", "static-peak", "oracle"]))
def test_no_run_without_waits_beats_the_bound(
    rows: list[tuple[int, int, int]], policy: str, trace_of: TraceOf, pool_of: PoolOf
) -> None:
    trace = trace_of(rows)
    pools = [pool_of(maxNodes=100, provisioningDelaySeconds=0)]
    cfg = config_for(policy, PolicyConfig(policy=policy), trace, pools)
    report = build_report(simulate(trace, pools, cfg, options=SimOptions(seed=1)))
    bound = no_wait_bound(trace, pools)
    if report["wait_s"]["max"] == 0:  # every job started at submit: the bound holds
        event("no waits")
        assert report["gpu_hours"]["provisioned"] >= bound.gpu_hours - 1e-6
    # and whatever the waits, nothing runs on less than the work itself
    assert report["gpu_hours"]["provisioned"] >= report["gpu_hours"]["used"] - 1e-6


def test_bundled_window_bound_is_below_every_policy(openb_window: Path, pool_of: PoolOf) -> None:
    with openb_window.open(newline="") as fh:
        trace = parse_trace(fh, source=str(openb_window))
    pools = [pool_of(maxNodes=1000)]
    bound = no_wait_bound(trace, pools)
    assert bound.gpu_hours > 0
    demanded = sum(j.total_gpus * (j.duration_s or 0.0) for j in trace.jobs) / HOUR
    assert bound.gpu_hours >= demanded  # whole nodes hold at least the work
    for policy in ("reactive", "oracle"):
        cfg = config_for(policy, PolicyConfig(policy=policy), trace, pools)
        report = build_report(simulate(trace, pools, cfg, options=SimOptions(seed=0)))
        assert report["gpu_hours"]["provisioned"] > bound.gpu_hours, policy
