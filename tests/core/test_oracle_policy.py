"""``oracle`` on hand-built snapshots: it knows arrivals and job ends, asks for nodes one
provisioning delay ahead, lets a gang wait for capacity freed within one delay, and removes
idle nodes at once unless a known gang needs them sooner than a new node could boot."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from dlscaler.model import Forecast, Gang, PoolState, RunningGang
from dlscaler.plan import Plan
from dlscaler.policy import decide

NOW = 1000.0


def oracle(
    snap: Any,
    pools: list[PoolState],
    pending: list[Gang] | None = None,
    arrivals: list[Gang] | None = None,
    running: list[RunningGang] | None = None,
) -> Plan:
    forecast = Forecast(
        start_s=NOW, step_s=60.0, quantiles=MappingProxyType({}), arrivals=tuple(arrivals or ())
    )
    return decide(
        now=NOW,
        pools=pools,
        pending=pending or [],
        running=running or [],
        forecast=forecast,
        config=snap.config("oracle"),
    )


def ups(plan: Plan) -> list[tuple[str, int, int, tuple[str, ...]]]:
    return [(u.pool, u.from_nodes, u.to_nodes, u.job_ids) for u in plan.scale_ups]


def test_an_arrival_within_one_delay_gets_its_nodes_now(snap: Any) -> None:
    # Delay 300 s; the gang arrives in 200 s: asking now is already late.
    gang = snap.gang("soon", workers=2, submit_s=NOW + 200, duration_s=600)
    plan = oracle(snap, [snap.pool(snap.spec())], arrivals=[gang])
    assert ups(plan) == [("pool", 0, 2, ("soon",))]


def test_an_arrival_further_ahead_is_asked_for_one_delay_before(snap: Any) -> None:
    # Arrives in 500 s with a 300 s delay: nothing now; wake at 1000 + 500 - 300 = 1200.
    gang = snap.gang("later", submit_s=NOW + 500, duration_s=600)
    plan = oracle(snap, [snap.pool(snap.spec())], arrivals=[gang])
    assert plan.scale_ups == ()
    assert plan.next_decision_s == NOW + 200


def test_the_pool_that_can_run_the_gang_soonest_grows(snap: Any) -> None:
    # "slow" (300 s boot) is cheaper; "fast" (60 s) can have a node ready when the gang
    # arrives at 1100: asked for at 1100 - 60 = 1040, so nothing yet.
    pools = [
        snap.pool(snap.spec("slow", price=4.0, delay_s=300.0)),
        snap.pool(snap.spec("fast", price=8.0, delay_s=60.0)),
    ]
    gang = snap.gang("g", submit_s=NOW + 100, duration_s=600)
    plan = oracle(snap, pools, arrivals=[gang])
    assert plan.scale_ups == ()
    assert plan.next_decision_s == NOW + 40


def test_a_gang_waits_for_a_node_freed_within_one_delay(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.ready("busy", used=8))
    job = snap.gang("job", duration_s=1000)
    pending = [snap.gang("next", submit_s=NOW, duration_s=600)]
    # The running job ends in 100 s, sooner than a 300 s boot: wait for its node.
    ends_soon = [snap.running(job, "pool", "busy", end_s=NOW + 100)]
    assert oracle(snap, [pool], pending, running=ends_soon).scale_ups == ()
    # It ends in 400 s: a new node is ready sooner.
    ends_late = [snap.running(job, "pool", "busy", end_s=NOW + 400)]
    assert ups(oracle(snap, [pool], pending, running=ends_late)) == [("pool", 1, 2, ("next",))]


def test_a_gang_waiting_for_nodes_in_flight_asks_for_nothing_more(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.in_flight("boot1", ready_s=NOW + 200))
    pending = [snap.gang("a", gpus=4, duration_s=600), snap.gang("b", gpus=4, duration_s=600)]
    plan = oracle(snap, [pool], pending)
    assert plan.scale_ups == () and plan.notes == ()


def test_growth_uses_partly_free_nodes(snap: Any) -> None:
    # "half" has 4 of 8 GPUs busy for a long time; 3 workers of 4 GPUs need one more node
    # (4 free + 8 new = room for 3), not ceil(3 / 2) = 2 fresh ones.
    pool = snap.pool(snap.spec(), snap.ready("half", used=4))
    job = snap.gang("job", gpus=4, duration_s=1e6)
    running = [snap.running(job, "pool", "half", end_s=NOW + 1e6)]
    pending = [snap.gang("g", workers=3, gpus=4, duration_s=600)]
    assert ups(oracle(snap, [pool], pending, running=running)) == [("pool", 1, 2, ("g",))]


def test_idle_node_is_kept_only_for_a_gang_that_comes_within_one_delay(snap: Any) -> None:
    pool = snap.pool(snap.spec(), snap.ready("idle", idle_since_s=NOW - 10))
    # Needed in 200 s (< 300 s boot): keeping it costs less than a new one.
    soon = snap.gang("soon", submit_s=NOW + 200, duration_s=60)
    plan = oracle(snap, [pool], arrivals=[soon])
    assert plan.removals == () and plan.scale_ups == ()
    # Nothing known within the lookahead: it goes at once (no idle timeout).
    plan = oracle(snap, [pool])
    assert [(r.node, r.reason) for r in plan.removals] == [
        ("idle", "idle, and no known gang needs it soon")
    ]


def test_idle_node_needed_later_than_one_delay_is_removed(snap: Any) -> None:
    # Delay 100 s. The gang arrives in 150 s: keeping the node 150 s costs more than
    # booting a new one 100 s ahead, so it goes now and a node is asked for at 1050.
    pool = snap.pool(snap.spec("pool", delay_s=100.0), snap.ready("idle"))
    other = snap.pool(snap.spec("other", delay_s=300.0, gpu_type="t4"))
    gang = snap.gang("g", submit_s=NOW + 150, duration_s=60)
    plan = oracle(snap, [pool, other], arrivals=[gang])
    assert [r.node for r in plan.removals] == ["idle"]
    assert plan.scale_ups == ()
    assert plan.next_decision_s == NOW + 50


def test_idle_nodes_are_kept_at_min(snap: Any) -> None:
    pool = snap.pool(snap.spec(min_nodes=1), snap.ready("a"), snap.ready("b"))
    plan = oracle(snap, [pool])
    assert [r.node for r in plan.removals] == ["a"]
    assert plan.targets == {"pool": 1}


def test_a_gang_of_a_type_no_pool_offers_is_named(snap: Any) -> None:
    plan = oracle(snap, [snap.pool(snap.spec())], [snap.gang("g", gpu_type="h100", duration_s=60)])
    [note] = plan.notes
    assert note.unschedulable and "'h100'" in note.reason
