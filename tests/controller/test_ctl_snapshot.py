"""Building the policy's pool states from Nodes, pods and the provider's description."""

from __future__ import annotations

from ctl_objects import T0, node, nodepool, pod

from controller.dljob import parse_pod
from controller.pools import nodepool_model
from controller.snapshot import PoolInput, build_view, parse_node
from dlscaler.model import NodePhase
from dlscaler.pool import GroupDescription, Instance, InstanceState


def describe(pool: str, target: int, *names: str, state=InstanceState.RUNNING) -> GroupDescription:
    return GroupDescription(
        group_id=pool,
        min_size=0,
        max_size=10,
        target_size=target,
        instances=tuple(Instance(f"kwok://{pool}/{n}", state, n) for n in names),
    )


def view(
    nodes,
    pods=(),
    *,
    target=None,
    instances=(),
    now=T0 + 100,
    last_scale_s=None,
    max_provisioning_s=900.0,
    idle_since=None,
    pool=None,
):
    model = nodepool_model(pool or nodepool("a"))
    desc = describe("a", target, *instances) if target is not None else None
    return build_view(
        now_s=now,
        pools=[PoolInput(model, desc, last_scale_s=last_scale_s)],
        nodes=[parse_node(n) for n in nodes],
        pods=[parse_pod(p) for p in pods],
        idle_since=idle_since or {},
        max_provisioning_s=max_provisioning_s,
    )


def test_a_node_counts_ready_only_once_its_gpus_are_allocatable():
    v = view([node("n1", pool="a"), node("n2", pool="a", ready=False)], target=2)
    (state,) = v.pools
    phases = {n.name: n.phase for n in state.nodes}
    assert phases == {"n1": NodePhase.READY, "n2": NodePhase.IN_FLIGHT}
    assert state.ready_nodes == 1
    assert state.in_flight_nodes == 1


def test_a_ready_node_still_tainted_not_ready_is_in_flight():
    v = view([node("n1", pool="a", taints=("node.kubernetes.io/not-ready",))], target=1)
    assert v.pools[0].nodes[0].phase is NodePhase.IN_FLIGHT


def test_target_above_listed_nodes_counts_as_in_flight():
    # The cloud accepted a target of 3; only one node registered so far.
    v = view([node("n1", pool="a")], target=3, instances=("n1",))
    state = v.pools[0]
    assert state.ready_nodes == 1
    assert state.in_flight_nodes == 2
    assert state.live_nodes == 3
    assert v.observations["a"].in_flight == 2


def test_instances_without_a_node_are_in_flight_and_not_counted_twice():
    nodes = [node("n1", pool="a", provider_id="kwok://a/n1")]
    v = view(nodes, target=2, instances=("n1", "n2"))
    state = v.pools[0]
    assert sorted((n.name, n.phase) for n in state.nodes) == [
        ("n1", NodePhase.READY),
        ("n2", NodePhase.IN_FLIGHT),
    ]
    assert state.live_nodes == 2


def test_a_node_is_matched_to_its_pool_by_provider_id_before_its_label():
    nodes = [node("n1", pool="other", provider_id="kwok://a/n1")]
    v = view(nodes, target=1, instances=("n1",))
    assert v.node_pool == {"n1": "a"}


def test_gpus_of_bound_and_pinned_pods_are_in_use():
    nodes = [node("n1", pool="a"), node("n2", pool="a")]
    pods = [
        pod("bound", node="n1", gpus=4),
        pod("pinned", assigned_node="n2", gpus=8, phase="Pending", job_uid="j", index=0),
        pod("done", node="n2", gpus=8, phase="Succeeded"),
    ]
    v = view(nodes, pods, target=2)
    used = {n.name: n.used_gpus for n in v.pools[0].nodes}
    assert used == {"n1": 4, "n2": 8}


def test_a_node_being_drained_is_draining_and_not_capacity():
    nodes = [node("n1", pool="a", draining_since_s=T0), node("n2", pool="a")]
    v = view(nodes, target=2)
    state = v.pools[0]
    assert {n.name: n.phase for n in state.nodes}["n1"] is NodePhase.DRAINING
    assert state.live_nodes == 1
    assert v.observations["a"].draining_nodes == ["n1"]


def test_a_node_not_ready_after_the_max_provisioning_time_is_stuck():
    nodes = [node("late", pool="a", ready=False, created_s=T0, provider_id="kwok://a/late")]
    v = view(nodes, target=1, instances=("late",), now=T0 + 1000, max_provisioning_s=600)
    obs = v.observations["a"]
    assert obs.stuck_nodes == ["late"]
    assert obs.stuck_provider_ids == ["kwok://a/late"]
    state = v.pools[0]
    assert state.in_flight_nodes == 0  # no longer capacity the policy can plan on
    assert state.live_nodes == 0


def test_unlisted_target_is_stuck_after_the_max_provisioning_time_since_the_scale_up():
    v = view([], target=2, now=T0 + 1000, last_scale_s=T0, max_provisioning_s=600)
    assert v.observations["a"].stuck_unlisted == 2
    assert v.pools[0].in_flight_nodes == 0
    fresh = view([], target=2, now=T0 + 100, last_scale_s=T0, max_provisioning_s=600)
    assert fresh.pools[0].in_flight_nodes == 2


def test_idle_since_is_passed_for_ready_nodes_only():
    nodes = [node("n1", pool="a"), node("n2", pool="a", ready=False)]
    v = view(nodes, target=2, idle_since={"n1": T0 + 5, "n2": T0 + 6})
    idle = {n.name: n.idle_since_s for n in v.pools[0].nodes}
    assert idle == {"n1": T0 + 5, "n2": None}


def test_nodes_of_unknown_pools_are_ignored():
    v = view([node("x", pool="elsewhere"), node("y")], target=0)
    assert v.pools[0].nodes == ()
    assert v.node_pool == {}


def test_without_a_description_the_target_is_unknown_and_only_listed_nodes_count():
    v = view([node("n1", pool="a"), node("n2", pool="a", ready=False)])
    assert v.pools[0].target_nodes is None
    assert v.pools[0].live_nodes == 2
