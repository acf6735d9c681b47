"""The repacking bounds: hand-checked values, no simulated run whose jobs all start on time
(or wait at most ``W``) ever provisions less than the bound for it, and ``wait_needed``
finds the wait the bounds demand for a cost."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from dlscaler.config import PolicyConfig, PoolModel
from dlscaler.trace import Trace, parse_trace
from simulator.bounds import no_wait_bound, wait_bound, wait_needed
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


@pytest.mark.parametrize(
    ("rows", "max_wait_s", "gpu_hours"),
    [
        # a 1-GPU hour started up to 30 min late surely runs in its second half hour:
        # a whole node then (4 GPU-h), more than the 1 GPU-h of work
        ([(0, HOUR, 1)], HOUR / 2, 4.0),
        # two 1-GPU hours one after the other: each surely runs its last 40 minutes
        ([(0, HOUR, 1), (HOUR, HOUR, 1)], HOUR / 3, 2 * 8 * 2 / 3),
        # two 1-GPU hours overlapping by half an hour: with 30 min of wait they surely run
        # on [30m, 1h) and [1h, 1h30m), one node for an hour (without waits: 1.5 hours)
        ([(0, HOUR, 1), (HOUR / 2, HOUR, 1)], HOUR / 2, 8.0),
        # 8-GPU jobs: the compulsory parts are less than the work, which still must run
        ([(0, HOUR, 8), (HOUR, HOUR, 8)], HOUR / 3, 16.0),
        # waits longer than every run: nothing is compulsory, the work itself is the bound
        ([(0, HOUR, 1), (2 * HOUR, HOUR, 1)], 3 * HOUR, 2.0),
    ],
)
def test_wait_bound_hand_checked(
    rows: list[tuple[float, float, int]],
    max_wait_s: float,
    gpu_hours: float,
    trace_of: TraceOf,
    pool_of: PoolOf,
) -> None:
    bound = wait_bound(trace_of(rows), [pool_of(pricePerHour=16.0)], max_wait_s)
    assert bound.gpu_hours == pytest.approx(gpu_hours)
    assert bound.as_dict()["max_wait_s"] == max_wait_s
    assert bound.gpu_hours <= no_wait_bound(trace_of(rows), [pool_of()]).gpu_hours


def test_wait_bound_refuses_a_negative_wait(trace_of: TraceOf, pool_of: PoolOf) -> None:
    with pytest.raises(ValueError, match="max_wait_s"):
        wait_bound(trace_of([(0, HOUR, 1)]), [pool_of()], -1.0)


@settings(max_examples=60, deadline=None)
@given(
    rows=jobs, delay=st.sampled_from([0, 300, 1800]), policy=st.sampled_from(["reactive", "oracle"])
)
def test_no_run_beats_the_bound_for_its_longest_wait(
    rows: list[tuple[int, int, int]], delay: int, policy: str, trace_of: TraceOf, pool_of: PoolOf
) -> None:
    trace = trace_of(rows)
    pools = [pool_of(maxNodes=6, provisioningDelaySeconds=delay)]  # few nodes: jobs queue
    cfg = config_for(policy, PolicyConfig(policy=policy), trace, pools)
    report = build_report(simulate(trace, pools, cfg, options=SimOptions(seed=1)))
    if report["jobs"]["unfinished"] or report["jobs"]["never_started"]:
        event("some jobs never ran")  # their waits are unbounded; no bound applies
        return
    longest = report["wait_s"]["max"]
    event("waits" if longest > 0 else "no waits")
    bound = wait_bound(trace, pools, longest)
    assert report["gpu_hours"]["provisioned"] >= bound.gpu_hours - 1e-6


def test_wait_needed_brackets_the_cost(trace_of: TraceOf, pool_of: PoolOf) -> None:
    # Ten 1-GPU jobs of 5 h, one every hour: without waits up to five share a node.
    trace = trace_of([(i * HOUR, 5 * HOUR, 1) for i in range(10)])
    pools = [pool_of(pricePerHour=8.0)]  # 1 USD per GPU-hour
    no_wait = no_wait_bound(trace, pools).cost_usd
    work = 10 * 5.0
    assert work < no_wait
    cost = (work + no_wait) / 2
    wait = wait_needed(trace, pools, cost)
    assert wait is not None and 0 < wait < 5 * HOUR
    assert wait % 60 == 0
    assert wait_bound(trace, pools, wait).cost_usd > cost  # some job must wait longer
    assert wait_bound(trace, pools, wait + 120).cost_usd <= cost  # to the resolution
    assert wait_needed(trace, pools, no_wait) is None  # no wait needed
    assert wait_needed(trace, pools, work - 1) == math.inf  # not even the work fits


@pytest.mark.timeout(20)
@pytest.mark.parametrize("resolution_s", [0.0, -60.0, math.nan])
def test_wait_needed_refuses_a_resolution_it_could_never_reach(
    resolution_s: float, trace_of: TraceOf, pool_of: PoolOf
) -> None:
    # the bisection stops once its bracket is within the resolution: at 0 or below (or NaN)
    # it never would
    trace = trace_of([(i * HOUR, 5 * HOUR, 1) for i in range(10)])
    pools = [pool_of(pricePerHour=8.0)]
    cost = (10 * 5.0 + no_wait_bound(trace, pools).cost_usd) / 2
    with pytest.raises(ValueError, match="resolution_s"):
        wait_needed(trace, pools, cost, resolution_s=resolution_s)


def test_wait_needed_refuses_a_cost_that_is_not_a_number(
    trace_of: TraceOf, pool_of: PoolOf
) -> None:
    trace = trace_of([(i * HOUR, 5 * HOUR, 1) for i in range(10)])
    with pytest.raises(ValueError, match="cost_usd"):
        wait_needed(trace, [pool_of(pricePerHour=8.0)], math.nan)
