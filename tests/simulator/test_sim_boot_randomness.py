"""Provisioning delays and boot failures: drawn from a seeded stream per pool, so the same
seed gives the same run; a node that fails to boot is billed and asked for again."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import pytest

from dlscaler.config import PolicyConfig, PoolModel
from dlscaler.trace import Trace
from simulator.cluster import SimPool
from simulator.report import build_report
from simulator.runner import SimOptions, simulate

TraceOf = Callable[..., Trace]
PoolOf = Callable[..., PoolModel]


def delays(model: PoolModel, seed: int, n: int = 200) -> list[float]:
    pool = SimPool.of(model, seed)
    return [pool.draw_delay_s() for _ in range(n)]


def test_fixed_delay_is_the_pools_delay(pool_of: PoolOf) -> None:
    assert set(delays(pool_of(provisioningDelaySeconds=120), seed=1)) == {120.0}


def test_uniform_delays_stay_within_the_spread(pool_of: PoolOf) -> None:
    model = pool_of(simulation={"delayDistribution": "uniform", "delaySpread": 0.5})
    drawn = delays(model, seed=1)
    # 300 s +- 50 %: 150..450 s.
    assert min(drawn) >= 150.0 and max(drawn) <= 450.0
    assert max(drawn) - min(drawn) > 150.0  # really spread, not a constant


def test_lognormal_delays_have_the_pools_delay_as_median(pool_of: PoolOf) -> None:
    model = pool_of(simulation={"delayDistribution": "lognormal", "delaySpread": 0.3})
    drawn = delays(model, seed=2, n=4000)
    assert all(d > 0 for d in drawn)
    # exp(mu) with mu = ln 300 is the median; 4000 draws put it within a few percent.
    assert statistics.median(drawn) == pytest.approx(300.0, rel=0.05)


def test_same_seed_same_draws_other_seed_other_draws(pool_of: PoolOf) -> None:
    model = pool_of(simulation={"delayDistribution": "lognormal", "bootFailureRate": 0.5})
    assert delays(model, seed=5) == delays(model, seed=5)
    assert delays(model, seed=5) != delays(model, seed=6)


def test_adding_a_pool_does_not_change_another_pools_draws(
    trace_of: TraceOf, pool_of: PoolOf
) -> None:
    # Streams are per pool (seeded by the run's seed and the pool's name): a t4 pool that
    # no job here uses leaves the any-type pool's boot delays, and so the start times and
    # node-hours, exactly as they were.
    # Jobs 2000 s apart: each node is gone (600 s idle) before the next job, so every job
    # waits for a boot of its own.
    trace = trace_of([(i * 2000, 300, 8) for i in range(10)])
    a = pool_of("a", simulation={"delayDistribution": "lognormal"})
    t4 = pool_of("t4", gpuType="t4", simulation={"delayDistribution": "lognormal"})
    alone = simulate(trace, [a], PolicyConfig(), options=SimOptions(seed=4))
    with_t4 = simulate(trace, [a, t4], PolicyConfig(), options=SimOptions(seed=4))
    assert [r.start_s for r in alone.jobs] == [r.start_s for r in with_t4.jobs]
    assert alone.pools[0].billed_node_seconds(alone.end_s) == with_t4.pools[0].billed_node_seconds(
        with_t4.end_s
    )
    waits = {r.start_s - r.gang.submit_s for r in alone.jobs if r.start_s is not None}
    assert len(waits) == 10  # every boot took its own time


def test_random_runs_repeat_with_the_same_seed(trace_of: TraceOf, pool_of: PoolOf) -> None:
    trace = trace_of([(i * 400, 900, 8) for i in range(20)])
    pools = [
        pool_of(simulation={"delayDistribution": "lognormal", "bootFailureRate": 0.3}),
    ]
    config = PolicyConfig(policy="reactive")

    def node_hours(seed: int) -> tuple[float, int]:
        report = build_report(simulate(trace, pools, config, options=SimOptions(seed=seed)))
        return report["gpu_hours"]["provisioned"], report["pools"][0]["boot_failures"]

    assert node_hours(11) == node_hours(11)
    assert len({node_hours(seed) for seed in range(5)}) > 1


def test_a_boot_failure_is_billed_and_the_node_asked_for_again(
    trace_of: TraceOf, pool_of: PoolOf
) -> None:
    # One 8-GPU job of 1000 s; 300 s boots that fail half the time; idle timeout 600 s.
    trace = trace_of([(0, 1000, 8)])
    pool = pool_of(simulation={"bootFailureRate": 0.5})
    seen_failure = False
    for seed in range(12):
        result = simulate(
            trace, [pool], PolicyConfig(), options=SimOptions(seed=seed, warm_start=False)
        )
        failures = result.pools[0].boot_failures
        seen_failure |= failures > 0
        [job] = result.jobs
        # Each failed node is noticed when it should have been ready, and another is
        # asked for at once; the job starts when one boots: 300 s per attempt.
        assert job.start_s == 300.0 * (failures + 1)
        # Billed: every failed node for its 300 s, then the good one from its request
        # to 600 s after the job ends: 300 + 1000 + 600 s.
        billed = 300.0 * failures + 1900.0
        assert result.pools[0].billed_node_seconds(result.end_s) == pytest.approx(billed)
        assert result.pools[0].scale_ups == failures + 1
        if failures:
            assert any("failed to boot" in line for line in result.reasons)
    assert seen_failure, "no seed in 0..11 drew a boot failure at a 50 % rate"


def test_warm_start_runs_the_first_instant_on_a_ready_cluster(trace_of: Any, pool_of: Any) -> None:
    """Jobs submitted at the trace's first instant were running when it began: with a warm
    start their nodes are ready at once (and billed from then); later jobs, and every job of
    a cold start, wait one boot."""
    trace = trace_of([(0, 3600, 8), (0, 3600, 8), (0, 3600, 1), (100, 600, 8)])
    pools = [pool_of(provisioningDelaySeconds=300)]
    cfg = PolicyConfig(policy="reactive")
    warm = simulate(trace, pools, cfg, options=SimOptions(seed=3))
    cold = simulate(trace, pools, cfg, options=SimOptions(seed=3, warm_start=False))
    waits = {
        name: [r.start_s - r.gang.submit_s for r in res.jobs if r.start_s is not None]
        for name, res in (("warm", warm), ("cold", cold))
    }
    assert waits["warm"] == [0.0, 0.0, 0.0, 300.0]
    assert waits["cold"] == [300.0, 300.0, 300.0, 300.0]
    # warm: three nodes billed from t=0 for the hour, plus the later job's node
    assert build_report(warm)["cost_usd"] < build_report(cold)["cost_usd"]
