"""``reactive`` on hand-built snapshots: scale up exactly what pending gangs need (counting
in-flight nodes), remove idle nodes only after the timeout, and explain what it cannot do."""

from __future__ import annotations

from typing import Any

import pytest

from dlscaler.model import NodePhase, NodeState, PoolState
from dlscaler.plan import Plan
from dlscaler.policy import decide


def reactive(snap: Any, pools: list[PoolState], pending: Any = (), **config: Any) -> Plan:
    now = config.pop("now", 0.0)
    running = config.pop("running", ())
    return decide(
        now=now,
        pools=pools,
        pending=list(pending),
        running=list(running),
        config=snap.config("reactive", **config),
    )


def applied(pool: PoolState, plan: Plan) -> PoolState:
    """The pool as the controller leaves it: new nodes in flight, removed ones gone."""
    gone = {r.node for r in plan.removals if r.pool == pool.name}
    nodes = [n for n in pool.nodes if n.name not in gone]
    for up in plan.scale_ups:
        if up.pool == pool.name:
            first = len(nodes)
            nodes += [
                NodeState(f"new-{first + i}", NodePhase.IN_FLIGHT, pool.spec.gpus_per_node)
                for i in range(up.added_nodes)
            ]
    return PoolState(spec=pool.spec, nodes=tuple(nodes))


# --- scale-up --------------------------------------------------------------------------


def test_scales_up_exactly_the_nodes_a_gang_needs(snap: Any) -> None:
    pool = snap.pool(snap.spec("a100"))
    plan = reactive(snap, [pool], [snap.gang("train", workers=3, gpus=8)])
    # 3 workers x 8 GPUs on empty 8-GPU nodes: 3 nodes.
    assert [(u.pool, u.from_nodes, u.to_nodes, u.job_ids) for u in plan.scale_ups] == [
        ("a100", 0, 3, ("train",))
    ]
    assert plan.targets == {"a100": 3}
    assert "pending gangs do not fit: train" in plan.reasons()[0]


def test_workers_pack_two_to_a_node(snap: Any) -> None:
    plan = reactive(snap, [snap.pool(snap.spec())], [snap.gang("g", workers=3, gpus=4)])
    assert plan.targets == {"pool": 2}  # 3 workers of 4 GPUs, 2 per node: ceil(3 / 2)


def test_partly_free_nodes_are_used_before_new_ones(snap: Any) -> None:
    # A node with 4 of 8 GPUs busy holds one 4-GPU worker; the other needs one new node.
    pool = snap.pool(snap.spec(), snap.ready("busy", used=4))
    plan = reactive(snap, [pool], [snap.gang("g", workers=2, gpus=4)])
    assert [(u.from_nodes, u.to_nodes) for u in plan.scale_ups] == [(1, 2)]


def test_a_gang_that_fits_on_ready_capacity_triggers_nothing(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.ready("n1", used=2))
    plan = reactive(snap, [pool], [snap.gang("g", gpus=6)])
    assert plan.scale_ups == () and plan.removals == ()
    assert plan.targets == {"pool": 1}


def test_a_gang_that_fits_on_in_flight_nodes_causes_no_extra_scale_up(snap: Any) -> None:
    pool = snap.pool(snap.spec())
    first = snap.gang("first", gpus=4)
    plan = reactive(snap, [pool], [first])
    assert plan.targets == {"pool": 1}
    after = applied(pool, plan)
    assert after.in_flight_nodes == 1
    # The next loop sees the same gang and a second one that fits in the other 4 GPUs of
    # the node in flight: nothing more to ask for.
    second = snap.gang("second", gpus=4, submit_s=1)
    plan = reactive(snap, [after], [first, second], now=10)
    assert plan.scale_ups == ()
    assert plan.targets == {"pool": 1}
    # A third 4-GPU gang no longer fits: exactly one more node.
    third = snap.gang("third", gpus=4, submit_s=2)
    plan = reactive(snap, [after], [first, second, third], now=20)
    assert [(u.from_nodes, u.to_nodes, u.job_ids) for u in plan.scale_ups] == [(1, 2, ("third",))]


def test_a_target_the_cloud_accepted_but_has_not_listed_counts_as_in_flight(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.ready("n1", used=8), target_nodes=3)
    assert pool.in_flight_nodes == 2
    plan = reactive(snap, [pool], [snap.gang("g", workers=2, gpus=8)])
    assert plan.scale_ups == ()
    assert plan.targets == {"pool": 3}


def test_draining_nodes_are_not_capacity(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.draining("old"))
    plan = reactive(snap, [pool], [snap.gang("g", gpus=8)])
    assert [(u.from_nodes, u.to_nodes) for u in plan.scale_ups] == [(0, 1)]


def test_scale_up_stops_at_max_nodes_and_says_why(snap: Any) -> None:
    pool = snap.pool(snap.spec(max_nodes=2))
    plan = reactive(snap, [pool], [snap.gang("big", workers=3), snap.gang("small", gpus=1)])
    # "big" needs 3 nodes of a 2-node pool: nothing for it; "small" gets one node.
    assert [(u.to_nodes, u.job_ids) for u in plan.scale_ups] == [(1, ("small",))]
    assert [(n.job_id, n.unschedulable) for n in plan.notes] == [("big", False)]
    assert "maxNodes" in plan.notes[0].reason


def test_scale_up_per_decision_is_capped(snap: Any) -> None:
    pool = snap.pool(snap.spec(max_nodes=100))
    pending = [snap.gang(f"g{i}") for i in range(5)]
    plan = reactive(snap, [pool], pending, max_scale_up_nodes=3)
    assert plan.targets == {"pool": 3}
    assert [n.job_id for n in plan.notes] == ["g3", "g4"]


def test_pool_below_min_is_grown_to_min(snap: Any) -> None:
    plan = reactive(snap, [snap.pool(snap.spec(min_nodes=2), snap.ready("n1"))])
    assert [(u.from_nodes, u.to_nodes) for u in plan.scale_ups] == [(1, 2)]
    assert "below minNodes (2)" in plan.scale_ups[0].reason


def test_gang_of_a_type_no_pool_offers_is_unschedulable_and_named(snap: Any) -> None:
    pools = [snap.pool(snap.spec("a100", gpu_type="a100")), snap.pool(snap.spec("any"))]
    plan = reactive(snap, pools, [snap.gang("g", gpu_type="h100")])
    assert plan.scale_ups == ()
    [note] = plan.notes
    assert (note.job_id, note.unschedulable) == ("g", True)
    assert "no pool offers GPU type 'h100'" in note.reason
    assert "(any), a100" in note.reason


def test_worker_larger_than_every_node_is_unschedulable(snap: Any) -> None:
    plan = reactive(snap, [snap.pool(snap.spec(gpus_per_node=4))], [snap.gang("g", gpus=8)])
    [note] = plan.notes
    assert note.unschedulable
    assert "a worker needs 8 GPUs; the largest fitting node has 4" in note.reason


# --- expanders and backed-off pools -----------------------------------------------------


@pytest.fixture
def two_pools(snap: Any) -> list[PoolState]:
    # "big": 8-GPU nodes at 16 USD/h = 2.0 USD per GPU-hour.
    # "small": 4-GPU nodes at 10 USD/h = 2.5 USD per GPU-hour.
    return [
        snap.pool(snap.spec("big", gpus_per_node=8, price=16.0)),
        snap.pool(snap.spec("small", gpus_per_node=4, price=10.0)),
    ]


def grown(plan: Plan) -> list[str]:
    return [u.pool for u in plan.scale_ups]


def test_cheapest_expander_grows_the_lowest_price_per_gpu(
    snap: Any, two_pools: list[PoolState]
) -> None:
    plan = reactive(snap, two_pools, [snap.gang("g", gpus=4)], expander="cheapest")
    assert grown(plan) == ["big"]


def test_least_waste_expander_grows_the_pool_wasting_least(
    snap: Any, two_pools: list[PoolState]
) -> None:
    # 4 GPUs: on "big" 4 GPUs idle x 2.0 = 8 USD/h wasted; on "small" none.
    plan = reactive(snap, two_pools, [snap.gang("g", gpus=4)], expander="least-waste")
    assert grown(plan) == ["small"]
    # 8 GPUs: "small" cannot hold an 8-GPU worker at all.
    plan = reactive(snap, two_pools, [snap.gang("g", gpus=8)], expander="least-waste")
    assert grown(plan) == ["big"]


def test_priority_expander_grows_the_preferred_pool(snap: Any, two_pools: list[PoolState]) -> None:
    plan = reactive(
        snap, two_pools, [snap.gang("g", gpus=4)], expander="priority", pool_priorities={"small": 5}
    )
    assert grown(plan) == ["small"]
    # Without priorities the tie is broken by price.
    plan = reactive(snap, two_pools, [snap.gang("g", gpus=4)], expander="priority")
    assert grown(plan) == ["big"]


def test_pool_order_in_the_snapshot_does_not_matter(snap: Any, two_pools: list[PoolState]) -> None:
    pending = [snap.gang("a", gpus=4), snap.gang("b", gpus=8)]
    forward = reactive(snap, two_pools, pending, expander="least-waste")
    backward = reactive(snap, two_pools[::-1], pending, expander="least-waste")
    assert forward == backward


def test_a_backed_off_pool_sends_the_gang_to_the_next_fitting_pool(
    snap: Any, two_pools: list[PoolState]
) -> None:
    big, small = two_pools
    stocked_out = PoolState(spec=big.spec, unavailable_until_s=1000.0)
    plan = reactive(snap, [stocked_out, small], [snap.gang("g", gpus=4)], now=500)
    assert grown(plan) == ["small"]
    # Once the back-off has passed, the cheaper pool is preferred again.
    plan = reactive(snap, [stocked_out, small], [snap.gang("g", gpus=4)], now=1000)
    assert grown(plan) == ["big"]


def test_every_fitting_pool_backed_off_is_a_wait_not_unschedulable(snap: Any) -> None:
    pool = snap.pool(snap.spec("a100"), unavailable_until_s=1000.0)
    plan = reactive(snap, [pool], [snap.gang("g")], now=10)
    assert plan.scale_ups == ()
    [note] = plan.notes
    assert not note.unschedulable
    assert "backed off (a100)" in note.reason


def test_a_backed_off_pool_still_takes_gangs_on_its_free_nodes(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.ready("n1", idle_since_s=0.0), unavailable_until_s=1e9)
    plan = reactive(snap, [pool], [snap.gang("g")], now=700)
    # The idle node (past its 600 s timeout) is kept for the gang; nothing is asked for.
    assert plan.scale_ups == () and plan.removals == () and plan.notes == ()


# --- scale-down -------------------------------------------------------------------------


def test_idle_node_is_kept_until_the_timeout_and_the_plan_says_when(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.ready("n1", idle_since_s=100.0))
    plan = reactive(snap, [pool], now=699.0)
    assert plan.removals == ()
    assert plan.next_decision_s == 700.0  # idle since 100 + 600 s timeout
    plan = reactive(snap, [pool], now=700.0)
    assert [(r.node, r.reason) for r in plan.removals] == [("n1", "idle for 600s (timeout 600s)")]
    assert plan.targets == {"pool": 0}


def test_next_decision_is_the_earliest_idle_expiry_across_pools(snap: Any) -> None:
    pools = [
        snap.pool(snap.spec("a"), snap.ready("a1", idle_since_s=300.0)),
        snap.pool(snap.spec("b", idle_timeout_s=100.0), snap.ready("b1", idle_since_s=500.0)),
        snap.pool(snap.spec("c"), snap.ready("c1", idle_since_s=0.0)),
    ]
    plan = reactive(snap, pools, now=650.0)
    # c1 expired at 600 (removed); b1 expires at 500 + 100 = 600 (removed; its pool's
    # own timeout); a1 at 300 + 600 = 900: the next decision.
    assert sorted(r.node for r in plan.removals) == ["b1", "c1"]
    assert plan.next_decision_s == 900.0


def test_longest_idle_goes_first_and_never_below_min(snap: Any) -> None:
    pool = snap.pool(
        snap.spec(min_nodes=1),
        snap.ready("n-a", idle_since_s=100.0),
        snap.ready("n-b", idle_since_s=0.0),
        snap.ready("n-c", idle_since_s=50.0),
        snap.ready("busy", used=8),
    )
    plan = reactive(snap, [pool], now=5000.0)
    # 4 nodes, min 1: up to 3 may go, and 3 are idle past the timeout.
    assert [r.node for r in plan.removals] == ["n-b", "n-c", "n-a"]
    pool_min3 = PoolState(spec=snap.spec(min_nodes=3), nodes=pool.nodes)
    plan = reactive(snap, [pool_min3], now=5000.0)
    # min 3: only one may go, the longest idle.
    assert [r.node for r in plan.removals] == ["n-b"]
    assert plan.targets == {"pool": 3}


def test_in_flight_nodes_count_towards_min(snap: Any) -> None:
    pool = snap.pool(
        snap.spec(min_nodes=2), snap.ready("idle", idle_since_s=0.0), snap.in_flight("boot")
    )
    plan = reactive(snap, [pool], now=5000.0)
    assert plan.removals == ()


def test_never_removes_a_node_a_pending_gang_will_use(snap: Any) -> None:
    pool = snap.pool(
        snap.spec(),
        snap.ready("old", idle_since_s=0.0),
        snap.ready("older", idle_since_s=-100.0),
    )
    plan = reactive(snap, [pool], [snap.gang("g", gpus=8)], now=5000.0)
    # Best fit puts the gang on the first empty node ("old"); "older" may go.
    assert [r.node for r in plan.removals] == ["older"]
    assert plan.scale_ups == ()


def test_never_removes_busy_or_booting_nodes(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.ready("busy", used=1), snap.in_flight("boot"))
    plan = reactive(snap, [pool], now=1e6)
    assert plan.removals == () and plan.next_decision_s is None


def test_nodes_above_a_lowered_max_are_removed_idle_first(snap: Any) -> None:
    pool = snap.pool(
        snap.spec(max_nodes=1),
        snap.ready("busy", used=8),
        snap.ready("idle-late", idle_since_s=90.0),
        snap.ready("idle-early", idle_since_s=10.0),
    )
    plan = reactive(snap, [pool], now=100.0)  # neither idle node is past its timeout
    assert [(r.node, r.reason) for r in plan.removals] == [
        ("idle-early", "above maxNodes (1)"),
        ("idle-late", "above maxNodes (1)"),
    ]
    assert plan.targets == {"pool": 1}


def test_unknown_policy_is_rejected(snap: Any) -> None:
    with pytest.raises(ValueError, match="unknown policy 'magic'"):
        decide(now=0.0, pools=[], pending=[], running=[], config=snap.config("magic"))
