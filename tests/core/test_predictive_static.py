"""``static-peak`` and ``predictive`` on hand-built snapshots and forecasts."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlscaler.model import EMPTY_FORECAST, Forecast, NodePhase, NodeState, PoolState
from dlscaler.plan import Plan
from dlscaler.policy import decide


def forecast(
    p90: float, *, p50: float | None = None, error_ratio: float | None = 0.5, steps: int = 10
) -> Forecast:
    """A flat forecast of ``p90`` (and ``p50``, default the same) GPUs over 10 x 60 s."""
    return Forecast(
        start_s=0.0,
        step_s=60.0,
        quantiles=MappingProxyType(
            {0.5: (p90 if p50 is None else p50,) * steps, 0.9: (p90,) * steps}
        ),
        model="test",
        recent_error_ratio=error_ratio,
    )


def plan_of(
    snap: Any,
    policy: str,
    pools: list[PoolState],
    pending: Any = (),
    fc: Forecast = EMPTY_FORECAST,
    now: float = 0.0,
    **config: Any,
) -> Plan:
    return decide(
        now=now,
        pools=pools,
        pending=list(pending),
        running=[],
        forecast=fc,
        config=snap.config(policy, **config),
    )


# --- static-peak ------------------------------------------------------------------------


def test_static_peak_grows_each_pool_to_its_fleet_and_never_shrinks(snap: Any) -> None:
    pools = [
        snap.pool(snap.spec("a", max_nodes=10), snap.ready("a1")),
        snap.pool(snap.spec("b", min_nodes=1)),
        snap.pool(snap.spec("c", max_nodes=3)),
        snap.pool(snap.spec("d"), *(snap.ready(f"d{i}", idle_since_s=0.0) for i in range(4))),
    ]
    plan = plan_of(snap, "static-peak", pools, now=1e6, static_nodes={"a": 5, "c": 8, "d": 2})
    # a: 1 -> 5; b is not listed: its min, 1; c: 8 capped at its max 3; d has 4 nodes idle
    # for a long time and a fleet of 2, but static-peak never scales down.
    assert [(u.pool, u.from_nodes, u.to_nodes) for u in plan.scale_ups] == [
        ("a", 1, 5),
        ("b", 0, 1),
        ("c", 0, 3),
    ]
    assert plan.removals == ()
    assert plan.targets == {"a": 5, "b": 1, "c": 3, "d": 4}


def test_static_peak_does_not_grow_for_pending_gangs(snap: Any) -> None:
    pools = [snap.pool(snap.spec("a"), snap.ready("a1", used=8))]
    plan = plan_of(snap, "static-peak", pools, [snap.gang("g")], static_nodes={"a": 1})
    assert plan.scale_ups == () and plan.notes == ()


def test_static_peak_names_a_gang_no_pool_can_run(snap: Any) -> None:
    pools = [snap.pool(snap.spec("a", gpu_type="a100"))]
    plan = plan_of(snap, "static-peak", pools, [snap.gang("g", gpu_type="t4")])
    [note] = plan.notes
    assert note.unschedulable and "'t4'" in note.reason


# --- predictive: trust ----------------------------------------------------------------


def reactive_view(plan: Plan) -> tuple[Any, ...]:
    return (plan.targets, plan.scale_ups, plan.removals, plan.notes, plan.next_decision_s)


@pytest.mark.parametrize(
    "fc",
    [
        EMPTY_FORECAST,
        forecast(64, error_ratio=None),  # no track record
        forecast(64, error_ratio=2.0),  # worse than maxErrorRatio 1.5
        forecast(64, error_ratio=float("nan")),
        forecast(64, steps=0),  # no horizon
    ],
    ids=["missing", "no-error-ratio", "error-above-max", "error-nan", "empty"],
)
def test_predictive_falls_back_to_reactive_when_the_forecast_is_not_trusted(
    snap: Any, fc: Forecast
) -> None:
    pools = [snap.pool(snap.spec(), snap.ready("n1", idle_since_s=0.0), snap.ready("n2", used=8))]
    pending = [snap.gang("g", workers=2)]
    predictive = plan_of(snap, "predictive", pools, pending, fc, now=1000)
    reactive = plan_of(snap, "reactive", pools, pending, fc, now=1000)
    assert predictive.fell_back and predictive.policy == "predictive"
    assert reactive_view(predictive) == reactive_view(reactive)
    # The gang takes the idle node and one new one.
    assert predictive.targets == {"pool": 3}


def test_error_ratio_at_the_limit_is_trusted(snap: Any) -> None:
    plan = plan_of(snap, "predictive", [snap.pool(snap.spec())], fc=forecast(16, error_ratio=1.5))
    assert not plan.fell_back


# --- predictive: ahead of demand -------------------------------------------------------


def test_grows_ahead_of_a_forecast_above_capacity(snap: Any) -> None:
    pools = [snap.pool(snap.spec(), snap.ready("n1", used=8))]
    plan = plan_of(snap, "predictive", pools, fc=forecast(40), now=0)
    # p90 of 40 GPUs against 8 GPUs of capacity: 32 short = 4 nodes of 8 (more than the
    # 1-node hysteresis), so 1 -> 5.
    assert not plan.fell_back
    assert [(u.from_nodes, u.to_nodes) for u in plan.scale_ups] == [(1, 5)]
    assert "forecast p90 of 40 GPUs" in plan.scale_ups[0].reason


def test_a_forecast_within_the_hysteresis_changes_nothing(snap: Any) -> None:
    pools = [snap.pool(snap.spec(), snap.ready("n1", used=8))]
    # 16 wanted, 8 there: 8 short is not more than one 8-GPU node.
    plan = plan_of(snap, "predictive", pools, fc=forecast(16))
    assert plan.scale_ups == ()
    plan = plan_of(snap, "predictive", pools, fc=forecast(17))
    assert [(u.from_nodes, u.to_nodes) for u in plan.scale_ups] == [(1, 3)]


def test_forecast_growth_stops_at_max_nodes(snap: Any) -> None:
    pools = [snap.pool(snap.spec(max_nodes=3))]
    plan = plan_of(snap, "predictive", pools, fc=forecast(800))
    assert plan.targets == {"pool": 3}


def test_pending_gangs_are_provisioned_on_top_of_the_forecast_floor(snap: Any) -> None:
    pools = [snap.pool(snap.spec())]
    pending = [snap.gang("g", workers=2)]
    # The forecast (8 GPUs) is below what the pending gang alone needs (16): the reactive
    # floor decides.
    plan = plan_of(snap, "predictive", pools, pending, fc=forecast(8))
    assert plan.targets == {"pool": 2}
    assert [u.job_ids for u in plan.scale_ups] == [("g",)]


def test_idle_nodes_stay_while_the_scale_down_quantile_needs_them(snap: Any) -> None:
    nodes = [snap.ready(f"n{i}", idle_since_s=0.0) for i in range(3)]
    pools = [snap.pool(snap.spec(), *nodes)]
    # All three are past the 600 s timeout. p50 of 16 GPUs keeps two of them.
    plan = plan_of(snap, "predictive", pools, fc=forecast(16, p50=16), now=1000)
    assert len(plan.removals) == 1
    assert plan.targets == {"pool": 2}


def test_the_forecast_never_removes_a_node_it_just_asked_for(snap: Any) -> None:
    nodes = [snap.ready(f"n{i}", idle_since_s=0.0) for i in range(2)]
    pools = [snap.pool(snap.spec(), *nodes)]
    # p90 wants 40 GPUs (5 nodes); p50 is low. Removing the two idle nodes while asking
    # for new ones would only pay for two boots.
    plan = plan_of(snap, "predictive", pools, fc=forecast(40, p50=0), now=1000)
    assert plan.removals == ()
    assert plan.targets == {"pool": 5}


def _applied(pool: PoolState, plan: Plan) -> PoolState:
    gone = {r.node for r in plan.removals}
    nodes = [n for n in pool.nodes if n.name not in gone]
    for up in plan.scale_ups:
        nodes += [
            NodeState(f"new-{len(nodes) + i}", NodePhase.IN_FLIGHT, pool.spec.gpus_per_node)
            for i in range(up.added_nodes)
        ]
    return PoolState(spec=pool.spec, nodes=tuple(nodes))


@settings(max_examples=100, deadline=None)
@given(
    idle=st.integers(0, 4),
    busy=st.integers(0, 4),
    in_flight=st.integers(0, 2),
    min_nodes=st.integers(0, 3),
    max_extra=st.integers(0, 6),
    pending=st.lists(st.tuples(st.integers(1, 3), st.sampled_from([1, 4, 8])), max_size=4),
    p90=st.integers(0, 120),
    p50_share=st.floats(0, 1),
    now=st.sampled_from([0.0, 700.0]),
)
def test_trusted_forecast_stays_between_the_reactive_floor_and_max(
    snap: Any,
    idle: int,
    busy: int,
    in_flight: int,
    min_nodes: int,
    max_extra: int,
    pending: list[tuple[int, int]],
    p90: int,
    p50_share: float,
    now: float,
) -> None:
    nodes = (
        [snap.ready(f"idle{i}", idle_since_s=0.0) for i in range(idle)]
        + [snap.ready(f"busy{i}", used=8) for i in range(busy)]
        + [snap.in_flight(f"boot{i}") for i in range(in_flight)]
    )
    max_nodes = max(min_nodes, len(nodes)) + max_extra
    pool = snap.pool(snap.spec(min_nodes=min_nodes, max_nodes=max_nodes), *nodes)
    gangs = [snap.gang(f"g{i}", workers=w, gpus=g) for i, (w, g) in enumerate(pending)]
    fc = forecast(p90, p50=p90 * p50_share)
    predictive = plan_of(snap, "predictive", [pool], gangs, fc, now=now)
    reactive = plan_of(snap, "reactive", [pool], gangs, now=now)
    assert not predictive.fell_back
    assert reactive.targets["pool"] <= predictive.targets["pool"] <= max_nodes
    # Applying the plan and deciding again with the same inputs asks for nothing more:
    # nodes in flight are counted, and what was kept for the forecast is not removed.
    again = plan_of(snap, "predictive", [_applied(pool, predictive)], gangs, fc, now=now)
    assert again.scale_ups == ()
    assert again.targets["pool"] == predictive.targets["pool"]
