"""Properties of ``decide()`` for every policy on generated snapshots: targets within
[min, max], removals only of idle ready nodes, and nodes in flight counted (a plan, once
applied, asks for nothing more when nothing else changed)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dlscaler.model import Forecast, Gang, NodePhase, NodeState, PoolSpec, PoolState
from dlscaler.plan import Plan
from dlscaler.policy import decide

NOW = 1000.0


@st.composite
def pool_states(draw: st.DrawFn, index: int, *, limits: bool = True) -> PoolState:
    """A pool; ``limits=False``: a max no plan here reaches (10 gangs of at most 3
    workers, plus min and existing nodes) and never backed off."""
    gpus = draw(st.sampled_from([4, 8]))
    min_nodes = draw(st.integers(0, 2))
    max_nodes = draw(st.integers(max(min_nodes, 1), 6)) if limits else 50
    spec = PoolSpec(
        name=f"p{index}",
        gpus_per_node=gpus,
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        price_usd_per_hour=draw(st.sampled_from([4.0, 8.0, 12.0])),
        gpu_type=draw(st.sampled_from(["", "", "a100"])),
        provisioning_delay_s=draw(st.sampled_from([0.0, 120.0, 300.0])),
    )
    nodes: list[NodeState] = []
    for i in range(draw(st.integers(0, min(max_nodes, 6)))):  # live nodes never above max
        kind = draw(st.sampled_from(["idle", "busy", "partial", "in-flight"]))
        name = f"{spec.name}-n{i}"
        if kind == "in-flight":  # asked for at most one provisioning delay ago
            ready = NOW + min(60.0, spec.provisioning_delay_s)
            nodes.append(NodeState(name, NodePhase.IN_FLIGHT, gpus, expected_ready_s=ready))
        elif kind == "idle":
            idle_since = draw(st.sampled_from([0.0, 500.0, 900.0]))
            nodes.append(NodeState(name, NodePhase.READY, gpus, idle_since_s=idle_since))
        else:
            used = gpus if kind == "busy" else gpus // 2
            nodes.append(NodeState(name, NodePhase.READY, gpus, used_gpus=used))
    if draw(st.booleans()):
        nodes.append(NodeState(f"{spec.name}-drain", NodePhase.DRAINING, gpus))
    backed_off = draw(st.sampled_from([None, None, NOW + 100])) if limits else None
    return PoolState(spec=spec, nodes=tuple(nodes), unavailable_until_s=backed_off)


def gangs(prefix: str, submit: st.SearchStrategy[float]) -> st.SearchStrategy[list[Gang]]:
    one = st.builds(
        lambda w, g, t, s, d, q: (w, g, t, s, d, q),
        st.integers(1, 3),
        st.sampled_from([1, 2, 4, 8]),
        st.sampled_from(["", "", "a100", "h100"]),
        submit,
        st.sampled_from([30.0, 600.0, 5000.0]),
        st.sampled_from(["a", "b"]),
    )
    return st.lists(one, max_size=5).map(
        lambda rows: [
            Gang(f"{prefix}{i}", s, w, g, gpu_type=t, duration_s=d, queue=q)
            for i, (w, g, t, s, d, q) in enumerate(rows)
        ]
    )


ALL_POLICIES = ("reactive", "predictive", "static-peak", "oracle")


@st.composite
def situations(
    draw: st.DrawFn,
    *,
    pools: int = 3,
    limits: bool = True,
    policies: tuple[str, ...] = ALL_POLICIES,
) -> dict[str, Any]:
    policy = draw(st.sampled_from(policies))
    pools_drawn = [draw(pool_states(i, limits=limits)) for i in range(draw(st.integers(1, pools)))]
    pending = draw(gangs("pending", st.sampled_from([0.0, 900.0, NOW])))
    arrivals = draw(gangs("future", st.sampled_from([NOW + 30, NOW + 200, NOW + 900])))
    level = float(draw(st.integers(0, 80)))
    forecast = Forecast(
        start_s=NOW,
        step_s=60.0,
        quantiles=MappingProxyType({0.5: (level / 2,) * 20, 0.9: (level,) * 20}),
        recent_error_ratio=draw(st.sampled_from([0.5, 3.0])),
        arrivals=tuple(arrivals) if policy == "oracle" else (),
    )
    config: dict[str, Any] = {
        "queue_ordering": draw(st.sampled_from(["fifo", "priority", "fair-share", "greedy"])),
        "expander": draw(st.sampled_from(["cheapest", "least-waste", "priority"])),
        "idle_timeout_s": draw(st.sampled_from([0.0, 300.0, 600.0])),
        "max_scale_up_nodes": draw(st.sampled_from([2, 1000])),
        "static_nodes": {p.name: draw(st.integers(0, 8)) for p in pools_drawn},
        "pool_priorities": {"p1": 10},
    }
    return {"pools": pools_drawn, "pending": pending, "forecast": forecast, "policy": policy} | {
        "config": config
    }


def run(snap: Any, s: dict[str, Any], pools: list[PoolState]) -> Plan:
    return decide(
        now=NOW,
        pools=pools,
        pending=s["pending"],
        running=[],
        forecast=s["forecast"],
        config=snap.config(s["policy"], **s["config"]),
    )


def applied(pools: list[PoolState], plan: Plan) -> list[PoolState]:
    """What the controller leaves behind: new nodes in flight, removed nodes gone."""
    out = []
    for pool in pools:
        gone = {r.node for r in plan.removals if r.pool == pool.name}
        nodes = [n for n in pool.nodes if n.name not in gone]
        added = sum(u.added_nodes for u in plan.scale_ups if u.pool == pool.name)
        nodes += [
            NodeState(f"{pool.name}-new{i}", NodePhase.IN_FLIGHT, pool.spec.gpus_per_node)
            for i in range(added)
        ]
        out.append(replace(pool, nodes=tuple(nodes)))
    return out


@settings(max_examples=100, deadline=None)
@given(situations())
def test_targets_stay_within_min_and_max_and_match_the_actions(
    snap: Any, s: dict[str, Any]
) -> None:
    pools: list[PoolState] = s["pools"]
    plan = run(snap, s, pools)
    by_name = {p.name: p for p in pools}
    assert set(plan.targets) == set(by_name)
    for name, target in plan.targets.items():
        pool = by_name[name]
        assert pool.spec.min_nodes <= target <= pool.spec.max_nodes
        added = sum(u.added_nodes for u in plan.scale_ups if u.pool == name)
        removed = sum(1 for r in plan.removals if r.pool == name)
        assert target == pool.live_nodes + added - removed
    for up in plan.scale_ups:
        assert up.added_nodes > 0
        assert up.to_nodes <= by_name[up.pool].spec.max_nodes


@settings(max_examples=100, deadline=None)
@given(situations())
def test_only_idle_ready_nodes_are_removed_each_once(snap: Any, s: dict[str, Any]) -> None:
    pools: list[PoolState] = s["pools"]
    plan = run(snap, s, pools)
    nodes = {(p.name, n.name): n for p in pools for n in p.nodes}
    removed = Counter((r.pool, r.node) for r in plan.removals)
    assert all(count == 1 for count in removed.values())
    for key in removed:
        node = nodes[key]
        assert node.phase is NodePhase.READY and node.used_gpus == 0
    if s["policy"] == "static-peak":
        assert plan.removals == ()  # a fixed fleet never shrinks (pools start within max)


@settings(max_examples=100, deadline=None)
@given(situations())
def test_a_gang_is_grown_for_in_at_most_one_pool(snap: Any, s: dict[str, Any]) -> None:
    plan = run(snap, s, s["pools"])
    jobs = Counter(j for u in plan.scale_ups for j in u.job_ids)
    assert all(count == 1 for count in jobs.values())
    noted = {n.job_id for n in plan.notes}
    assert not noted & set(jobs)


def asks_for_nothing_more(snap: Any, s: dict[str, Any]) -> None:
    # Not under the per-decision cap on new nodes, which by design leaves work for later.
    s["config"]["max_scale_up_nodes"] = 1000
    first = run(snap, s, s["pools"])
    again = run(snap, s, applied(s["pools"], first))
    assert again.scale_ups == ()
    assert again.targets == first.targets


@settings(max_examples=100, deadline=None)
@given(situations(pools=1))
def test_nodes_in_flight_are_counted_so_an_applied_plan_asks_for_nothing_more(
    snap: Any, s: dict[str, Any]
) -> None:
    asks_for_nothing_more(snap, s)


@settings(max_examples=100, deadline=None)
@given(situations(limits=False, policies=("reactive", "predictive", "static-peak")))
def test_across_pools_an_applied_plan_asks_for_nothing_more(snap: Any, s: dict[str, Any]) -> None:
    # Planning is greedy and keeps no memory of which gang a node was asked for (exact
    # packing across pools is a bin-packing search no policy here does), so across pools
    # two corners are left out:
    # - a gang that spills past a pool at its max (or backed off) onto the next one can,
    #   planned again, take the nodes grown for another gang in a pool it prefers, and
    #   displace that gang;
    # - the oracle plans known arrivals in time order, and an earlier gang may wait for
    #   existing nodes: planned again, it can wait for the node grown for a later gang in
    #   another pool (one that gang alone can run) and displace it.
    # On one pool both hold in full (the test above).
    asks_for_nothing_more(snap, s)


@settings(max_examples=50, deadline=None)
@given(situations())
def test_decide_is_pure_and_ignores_pool_order(snap: Any, s: dict[str, Any]) -> None:
    pools: list[PoolState] = s["pools"]
    assert run(snap, s, pools) == run(snap, s, pools[::-1])


def test_the_generated_situations_reach_every_action(snap: Any) -> None:
    """Guard against a strategy that never exercises what the properties are about."""
    seen: Counter[str] = Counter()

    @settings(max_examples=100, deadline=None, database=None)
    @given(situations())
    def collect(s: dict[str, Any]) -> None:
        plan = run(snap, s, s["pools"])
        seen["scale_up"] += bool(plan.scale_ups)
        seen["removal"] += bool(plan.removals)
        seen["note"] += bool(plan.notes)
        seen["job_scale_up"] += any(u.job_ids for u in plan.scale_ups)

    collect()
    assert min(seen[k] for k in ("scale_up", "removal", "note", "job_scale_up")) > 0, seen
