"""Room for arrivals in their gang shapes: the histogram placement, hand-checked, and the
predictive policy growing for (and keeping nodes for) the quantile of past windows."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlscaler.model import Forecast, Gang
from dlscaler.placement import place_workers
from dlscaler.policy import decide
from dlscaler.policy.scenarios import extra_nodes, free_histogram, pick_outcome


def g(workers: int, gpus: int, job: str = "x") -> Gang:
    return Gang(job, 0.0, workers, gpus)


@pytest.mark.parametrize(
    ("free", "gangs", "extra"),
    [
        ([], [], 0),
        ([1, 1, 1, 1], [g(1, 1)] * 4, 0),  # four 1-GPU jobs on four 1-GPU fragments
        ([1, 1, 1, 1], [g(1, 2)], 1),  # 4 free GPUs, but no 2 on one node
        ([3, 5], [g(1, 4)], 0),  # best fit: the 5
        ([3, 5], [g(1, 4), g(1, 4)], 1),  # the second 4 needs a fresh node
        ([8, 0], [g(2, 8)], 1),  # a 2x8 gang: one free node, one fresh
        ([], [g(1, 8), g(4, 2), g(1, 1)], 3),  # nodes: 8 | 2+2+2+2 | 1
        ([0, 0], [g(1, 16)], 0),  # a worker larger than a node: no node of this pool holds it
    ],
)
def test_extra_nodes_hand_checked(free: list[int], gangs: list[Gang], extra: int) -> None:
    assert extra_nodes(free_histogram(free, 8), gangs, 8) == extra


@settings(max_examples=200, deadline=None)
@given(
    free=st.lists(st.integers(0, 8), max_size=12),
    gangs=st.lists(
        st.tuples(st.integers(1, 4), st.sampled_from([1, 2, 4, 8])), min_size=1, max_size=6
    ),
)
def test_extra_nodes_is_enough_for_the_real_placement(
    free: list[int], gangs: list[tuple[int, int]]
) -> None:
    """With the counted fresh nodes added, every gang (all or nothing, best fit) can be
    placed in turn, largest workers first."""
    shapes = [g(w, s) for w, s in gangs]
    n = extra_nodes(free_histogram(free, 8), shapes, 8)
    capacity = list(free) + [8] * n
    for gang in sorted(shapes, key=lambda x: -x.gpus_per_worker):
        for _ in range(gang.workers):  # worker by worker, as the histogram placed them
            chosen = place_workers(capacity, 1, gang.gpus_per_worker)
            assert chosen is not None
            capacity[chosen[0]] -= gang.gpus_per_worker
    # and never more than one fresh node per worker
    assert n <= sum(w for w, _ in gangs)


def fc(scenarios: list[list[Gang]], *, error_ratio: float = 0.5) -> Forecast:
    """A forecast whose demand quantiles ask for nothing, with the given scenarios."""
    return Forecast(
        start_s=0.0,
        step_s=60.0,
        quantiles=MappingProxyType({0.5: (0.0,) * 10, 0.9: (0.0,) * 10}),
        model="test",
        recent_error_ratio=error_ratio,
        arrival_scenarios=tuple(tuple(s) for s in scenarios),
    )


def plan(snap: Any, pools: Any, forecast: Forecast, now: float = 0.0, **predictive: Any) -> Any:
    return decide(
        now=now,
        pools=pools,
        pending=[],
        running=[],
        forecast=forecast,
        config=snap.config("predictive", predictive=predictive),
    )


def test_grows_for_the_quantile_scenario_in_gang_shape(snap: Any) -> None:
    # 4 free GPUs as fragments: forty 1-GPU windows fit, a 2x8 gang does not.
    pools = [snap.pool(snap.spec("a"), *(snap.ready(f"n{i}", used=7) for i in range(4)))]
    quiet = [[g(1, 1)]] * 8
    p = plan(snap, pools, fc([*quiet, [g(2, 8)], [g(2, 8)]]), arrival_quantile=0.9)
    assert [(u.from_nodes, u.to_nodes) for u in p.scale_ups] == [(4, 6)]
    assert "room for the p90 of arrivals" in p.scale_ups[0].reason
    # at p80 the 2x8 windows are the top 20%: nothing to add
    assert (
        plan(snap, pools, fc([*quiet, [g(2, 8)], [g(2, 8)]]), arrival_quantile=0.8).scale_ups == ()
    )
    # turned off
    assert plan(snap, pools, fc([[g(2, 8)]] * 10), arrival_quantile=0.0).scale_ups == ()


def test_untrusted_forecast_falls_back_to_reactive_scenarios_and_all(snap: Any) -> None:
    pools = [snap.pool(snap.spec("a"))]
    p = plan(snap, pools, fc([[g(1, 8)]] * 10, error_ratio=9.0))
    assert p.fell_back and p.scale_ups == ()


def test_keeps_idle_nodes_the_scenario_needs(snap: Any) -> None:
    # two nodes idle since t=0, timeout 600 s, now 10,000 s: reactive would remove both.
    pools = [snap.pool(snap.spec("a"), snap.ready("n0"), snap.ready("n1"))]
    windows = [[g(1, 8)]] * 10  # every past window brought one 8-GPU job
    p = plan(snap, pools, fc(windows), now=10_000.0)
    assert [r.node for r in p.removals] == ["n0"] or [r.node for r in p.removals] == ["n1"]
    assert p.targets == {"a": 1}
    quiet = plan(snap, pools, fc([[]] * 10), now=10_000.0)
    assert len(quiet.removals) == 2


def test_respects_max_nodes(snap: Any) -> None:
    pools = [snap.pool(snap.spec("a", max_nodes=3), snap.ready("n0", used=8))]
    p = plan(snap, pools, fc([[g(8, 8)]] * 10))
    assert p.targets == {"a": 3}


def test_scenario_gangs_go_to_the_pool_that_takes_their_type(snap: Any) -> None:
    pools = [
        snap.pool(snap.spec("cheap", gpu_type="t4", price=1.0)),
        snap.pool(snap.spec("big", gpu_type="a100", price=30.0)),
    ]
    windows = [[replace(g(1, 8), gpu_type="a100")]] * 10
    p = plan(snap, pools, fc(windows))
    assert [(u.pool, u.to_nodes) for u in p.scale_ups] == [("big", 1)]


def test_pick_outcome_pays_for_rarer_bursts_within_the_budget() -> None:
    # 100 windows: 90 need nothing, 9 need 1 node, 1 needs 6 nodes
    outcomes = [(0.0, 0)] * 90 + [(1.0, 1)] * 9 + [(6.0, 6)]
    assert outcomes[pick_outcome(outcomes, 0.85, budget_nodes=0)] == (0.0, 0)
    assert outcomes[pick_outcome(outcomes, 0.85, budget_nodes=1)] == (1.0, 1)  # the p99
    assert outcomes[pick_outcome(outcomes, 0.85, budget_nodes=5)] == (1.0, 1)
    assert outcomes[pick_outcome(outcomes, 0.95, budget_nodes=0)] == (1.0, 1)  # q itself
    # the 1% window is beyond the burst quantile, whatever the budget
    assert outcomes[pick_outcome(outcomes, 0.85, budget_nodes=100)] == (1.0, 1)


def test_budget_scales_with_the_cluster(snap: Any) -> None:
    """Windows of one in twenty bring a 2x8 gang. At p85 nothing is kept for them; a 3%
    budget buys the room in a 100-node pool (3 nodes) but not in a 10-node one (0)."""
    windows = [[]] * 95 + [[g(2, 8)]] * 5

    def grown(nodes: int, budget: float) -> int:
        busy = [snap.ready(f"n{i}", used=8) for i in range(nodes)]
        pools = [snap.pool(snap.spec("a", max_nodes=1000), *busy)]
        p = plan(snap, pools, fc(windows), arrival_quantile=0.85, arrival_budget=budget)
        return p.targets["a"] - nodes

    assert grown(100, 0.03) == 2
    assert grown(10, 0.03) == 0
    assert grown(100, 0.0) == 0


def test_a_plan_for_room_once_applied_asks_for_nothing_more(snap: Any) -> None:
    """The budget bounds the room held, not what is added at each decision: with the
    room's nodes in flight, the next decision must not pick a rarer scenario."""
    busy = [snap.ready(f"n{i}", used=8) for i in range(100)]
    windows = [[]] * 85 + [[g(1, 8)]] * 13 + [[g(1, 8), g(1, 8)]] * 2
    nodes = list(busy)
    targets = []
    for step in range(4):
        pools = [snap.pool(snap.spec("a", max_nodes=1000), *nodes)]
        p = plan(snap, pools, fc(windows), now=10_000.0)
        targets.append(p.targets["a"])
        for up in p.scale_ups:
            nodes += [snap.in_flight(f"new{step}-{i}") for i in range(up.added_nodes)]
    # p85 is an empty window; the 1% budget (1 node) buys the p99 window's... one node at
    # most, and never a second one on top of it
    assert targets == [101, 101, 101, 101]


def test_budget_bounds_room_kept_from_idle_nodes_too(snap: Any) -> None:
    busy = [snap.ready(f"n{i}", used=8) for i in range(1000)]
    idle = [snap.ready(f"i{i}") for i in range(70)]  # idle since 0, long past the timeout
    windows = [[]] * 85 + [[g(1, 8)] * (5 * k) for k in range(1, 16)]
    pools = [snap.pool(snap.spec("a", max_nodes=2000), *busy, *idle)]
    p = plan(snap, pools, fc(windows), now=10_000.0)
    assert p.scale_ups == ()
    # the p99 window needs 75 nodes, over the budget of 10; p85 needs none: keep 0..10
    assert 60 <= len(p.removals) <= 70
    assert p.targets["a"] == 1070 - len(p.removals)


def test_room_short_in_one_pool_never_keeps_another_pools_idle_nodes(snap: Any) -> None:
    full = snap.pool(
        snap.spec("a", price=1.0, max_nodes=2), snap.ready("a0", used=8), snap.ready("a1", used=8)
    )
    other = snap.pool(snap.spec("b", price=30.0), *(snap.ready(f"b{i}") for i in range(3)))
    p = plan(snap, [full, other], fc([[g(1, 8)]] * 10), now=10_000.0)
    # a cannot grow (at max); b's idle nodes are not room for a's arrivals: they go
    assert sorted(r.node for r in p.removals) == ["b0", "b1", "b2"]


def test_a_backed_off_pool_keeps_the_idle_nodes_that_are_its_room(snap: Any) -> None:
    nodes = [snap.ready(f"busy{i}", used=8) for i in range(5)]
    nodes += [snap.ready(f"idle{i}") for i in range(3)]
    windows = [[g(1, 8), g(1, 8)]] * 10  # every window brings two 8-GPU jobs
    for until in (None, 10_100.0):
        pools = [snap.pool(snap.spec("a", max_nodes=20), *nodes, unavailable_until_s=until)]
        p = plan(snap, pools, fc(windows), now=10_000.0)
        assert len(p.removals) == 1, until  # two of the three idle nodes are kept
        assert p.scale_ups == ()
