"""Consolidation in the controller: the predictive policy's cordons and uncordons applied to
Nodes, and an emptied cordoned node removed through the ordinary drain.

Whole passes (``Reconciler.run_once``) on an in-memory API server and a fake cloud, with a
forecast the policy trusts and run-time estimates learnt from finished DLJobs (per queue,
as the regressor answers before it has enough jobs to train on)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

import pytest
from ctl_memory_api import MemoryApi
from ctl_objects import T0, dljob, node, nodepool, pod

from controller import drain
from controller.clock import format_time
from controller.dljob import RUNNING, SUCCEEDED, parse_dljob, parse_pod
from controller.events import EventRecorder
from controller.forecasting import Forecasting, forecast_shape
from controller.kube import Kube, core_path, custom_path
from controller.metrics import Metrics
from controller.names import CONSOLIDATING_ANNOTATION, DLJOBS, DRAINING_ANNOTATION, NODEPOOLS
from controller.pools import PoolManager, nodepool_model
from controller.reconcile import PassResult, Reconciler
from controller.runtimes import RuntimeEstimates
from controller.settings import ControllerSettings
from controller.snapshot import PoolInput, build_view, parse_node
from dlscaler.config import PolicyConfig, PredictiveParams
from dlscaler.model import Forecast, NodePhase
from dlscaler.policy import consolidation
from providers.fake import FakeCloud

NS = "ns"
POOL = "p"
HOUR = 3600.0
NODES = core_path("nodes")
CONFIG = PolicyConfig(
    policy="predictive",
    idle_timeout_s=600,
    predictive=PredictiveParams(
        hysteresis_nodes=0,
        arrival_quantile=0.0,
        arrival_budget=0.0,
        consolidate_within_s=1800,
    ),
)


class SteadyForecaster:
    """Demand of ``gpus`` throughout, from a model twice as good as the naive one."""

    def __init__(self, gpus: float) -> None:
        self.gpus = gpus

    def forecast(self, now_s: float, horizon_s: float, *, series: Any) -> Forecast:
        del series
        steps = int(horizon_s // 60)
        quantiles = {q: (self.gpus,) * steps for q in forecast_shape(CONFIG)[0]}
        return Forecast(now_s, 60.0, quantiles, model="steady", recent_error_ratio=0.5)


def finished(name: str, queue: str, run_s: float) -> Any:
    obj = dljob(name, workers=1, queue=queue)
    obj["status"] = {
        "phase": SUCCEEDED,
        "workers": 1,
        "startTime": format_time(T0 - 10 * HOUR),
        "completionTime": format_time(T0 - 10 * HOUR + run_s),
    }
    return parse_dljob(obj)


def running_job(name: str, queue: str, node_name: str, started_s: float) -> dict[str, Any]:
    obj = dljob(name, workers=1, queue=queue)
    obj["status"] = {
        "phase": RUNNING,
        "workers": 1,
        "admittedTime": format_time(started_s),
        "startTime": format_time(started_s),
        "workerStates": [{"index": 0, "nodeName": node_name, "phase": "Running"}],
    }
    return obj


@dataclass
class World:
    api: MemoryApi
    cloud: FakeCloud
    reconciler: Reconciler
    clock: list[float]
    nodes: list[str]
    """The pool's node names, as the cloud named its instances."""

    def run(self, after_s: float = 10.0) -> PassResult:
        self.clock[0] += after_s
        return self.reconciler.run_once()

    def node(self, name: str) -> dict[str, Any]:
        obj = self.api.peek(core_path("nodes", name=name))
        assert obj is not None, f"node {name} is gone"
        return obj

    def marked(self, name: str) -> bool:
        return CONSOLIDATING_ANNOTATION in (self.node(name)["metadata"].get("annotations") or {})

    def cordoned(self, name: str) -> bool:
        return bool(self.node(name)["spec"].get("unschedulable"))

    def add_job(self, name: str, queue: str, node_name: str, started_s: float) -> None:
        job = self.api.put(custom_path(DLJOBS, NS), running_job(name, queue, node_name, started_s))
        self.api.put(
            core_path("pods", NS),
            pod(f"{name}-worker-0", node=node_name, job_uid=job["metadata"]["uid"], index=0),
        )

    def short_and_long(self, short: str, long: str) -> None:
        """Jobs of queue ``quick`` on ``short`` and of ``slow`` on ``long``, both running for
        five minutes."""
        self.add_job("short", "quick", short, T0 - 300)
        self.add_job("long", "slow", long, T0 - 300)

    def finish(self, pod_name: str) -> None:
        obj = self.api.peek(core_path("pods", NS, pod_name))
        assert obj is not None
        obj["status"]["phase"] = "Succeeded"

    def pool_events(self, reason: str) -> list[str]:
        return [
            e["message"]
            for e in self.api.events(reason)
            if e["involvedObject"]["kind"] == "NodePool"
        ]

    def instances(self) -> list[str]:
        return sorted(i.name for i in self.cloud.snapshot(POOL).instances)


@pytest.fixture
def world() -> Any:
    made: list[World] = []

    def make(count: int) -> World:
        w = build_world(count)
        made.append(w)
        return w

    yield make
    for w in made:
        w.reconciler.close()


def build_world(count: int) -> World:
    """A pool of ``count`` ready nodes, no jobs yet; the runtime regression knows that jobs
    of queue ``quick`` take ten minutes and those of ``slow`` ten hours."""
    clock = [T0]
    now: Callable[[], float] = lambda: clock[0]  # noqa: E731 - a shared, movable clock
    api = MemoryApi()
    kube = cast(Kube, api)
    cloud = FakeCloud()
    cloud.add_group(POOL, max_size=4, target=count)
    api.put(custom_path(NODEPOOLS), nodepool(POOL, max_nodes=4, delay_s=60, idle_timeout_s=600))
    names = []
    for inst in cloud.snapshot(POOL).instances:
        api.put(NODES, node(inst.name, pool=POOL, provider_id=inst.provider_id,
                            ready_since_s=T0 - HOUR))  # fmt: skip
        names.append(inst.name)
    settings = ControllerSettings(
        policy=CONFIG, namespaces=(NS,), identity="test", interval_s=10, max_drain_s=600
    )
    metrics = Metrics()
    estimates = RuntimeEstimates(background=False)
    estimates.observe(
        [finished(f"q{i}", "quick", 600) for i in range(3)]
        + [finished(f"s{i}", "slow", 10 * HOUR) for i in range(3)]
    )
    reconciler = Reconciler(
        kube,
        settings,
        metrics=metrics,
        events=EventRecorder(kube, identity="test", clock=now),
        pools=PoolManager(lambda model: cloud.provider(model.name), metrics=metrics, clock=now),
        forecasting=Forecasting(CONFIG, SteadyForecaster(4), background=False, clock=now),
        clock=now,
        runtimes=estimates,
    )
    for i in range(3):  # enough history for the forecaster to be asked
        reconciler.history.observe(T0 - 180 + 60 * i, 4)
    return World(api, cloud, reconciler, clock, sorted(names))


def test_a_node_whose_job_ends_soon_is_cordoned_emptied_and_removed_while_the_other_stays(
    world: Callable[[int], World],
) -> None:
    w = world(2)
    short, long = w.nodes
    w.short_and_long(short, long)

    result = w.run()
    assert [(c.pool, c.node) for c in result.plan.cordons] == [(POOL, short)]
    assert w.cordoned(short) and w.marked(short)
    assert not w.cordoned(long) and not w.marked(long)
    assert w.api.peek(core_path("pods", NS, "short-worker-0")) is not None  # nothing evicted
    [message] = w.pool_events("Cordoned")
    assert message.startswith(f"cordoned {short} (nothing evicted; removed once empty): ")

    # While its job runs the node stays cordoned, and the drain's time limit does not
    # apply: it is not being drained.
    w.run(after_s=700)
    assert w.cordoned(short) and w.marked(short)
    assert not (w.node(short)["metadata"].get("annotations") or {}).get(DRAINING_ANNOTATION)
    assert ("create", core_path("pods", NS, "short-worker-0", "eviction")) not in w.api.calls
    assert not w.pool_events("DrainTimeout") and not w.pool_events("ScaleDownCancelled")

    w.finish("short-worker-0")
    w.run()  # empty now: the drain starts, the mark traded for the drain's
    annotations = w.node(short)["metadata"]["annotations"]
    assert DRAINING_ANNOTATION in annotations and CONSOLIDATING_ANNOTATION not in annotations
    assert any(m.startswith(f"draining {short}: cordoned to consolidate") for m in
               w.pool_events("ScaleDown"))  # fmt: skip
    w.run()  # nothing left to evict: the instance is deleted
    assert w.instances() == [long]
    assert not w.cordoned(long)
    assert "Uncordoned" not in {e["reason"] for e in w.api.events()}


def test_returning_demand_puts_back_the_consolidation_cordon_and_never_an_administrators(
    world: Callable[[int], World],
) -> None:
    w = world(3)
    admin, ours, busy = w.nodes
    w.short_and_long(ours, busy)
    # Someone else's GPU pod on a node an administrator cordoned.
    w.api.put(core_path("pods", "team"), pod("theirs", node=admin, namespace="team"))
    w.node(admin)["spec"]["unschedulable"] = True
    w.run()
    assert w.cordoned(ours) and w.marked(ours)

    # A gang arrives that fits on no node in service: the pool must grow.
    w.api.put(custom_path(DLJOBS, NS), dljob("new", workers=1, queue="quick"))
    result = w.run()
    assert {c.node for c in result.plan.uncordons} == {ours}
    assert result.plan.scale_ups
    assert not w.cordoned(ours) and not w.marked(ours)
    assert w.cordoned(admin) and not w.marked(admin)
    [message] = w.pool_events("Uncordoned")
    assert message.startswith(f"{ours} back in service: ")


def test_a_node_is_not_cordoned_while_a_worker_placed_there_waits_to_be_bound(
    world: Callable[[int], World],
) -> None:
    w = world(2)
    short, long = w.nodes
    w.short_and_long(short, long)
    pending = w.api.peek(core_path("pods", NS, "short-worker-0"))
    assert pending is not None
    pending["spec"]["nodeName"] = ""
    pending["metadata"]["annotations"]["dlscaler.io/assigned-node"] = short
    pending["status"]["phase"] = "Pending"

    result = w.run()
    assert [c.node for c in result.plan.cordons] == [short]  # the policy asks...
    assert not w.cordoned(short) and not w.marked(short)  # ...the scheduler would refuse it
    assert not w.pool_events("Cordoned")

    pending["spec"]["nodeName"] = short
    pending["status"]["phase"] = "Running"
    w.run()
    assert w.cordoned(short) and w.marked(short)


def test_a_mark_left_on_a_node_someone_uncordoned_is_dropped(
    world: Callable[[int], World],
) -> None:
    w = world(2)
    short, long = w.nodes
    w.short_and_long(short, long)
    w.run()
    assert w.marked(short)
    w.node(short)["spec"]["unschedulable"] = False  # `kubectl uncordon`
    w.run()
    assert not w.marked(short)


# --- the pieces -----------------------------------------------------------------------------


def test_the_policy_sees_only_consolidation_cordons_as_nodes_it_may_put_back() -> None:
    objs = [
        node("ours", pool=POOL),
        node("admins", pool=POOL),
        node("drained", pool=POOL, draining_since_s=T0),
        node("ready", pool=POOL),
    ]
    objs[0]["metadata"]["annotations"][CONSOLIDATING_ANNOTATION] = format_time(T0)
    objs[0]["spec"]["unschedulable"] = True
    objs[1]["spec"]["unschedulable"] = True
    pods = [pod(f"p-{o['metadata']['name']}", node=o["metadata"]["name"]) for o in objs]
    view = build_view(
        now_s=T0 + 60,
        pools=[PoolInput(nodepool_model(nodepool(POOL)), None)],
        nodes=[parse_node(o) for o in objs],
        pods=[parse_pod(p) for p in pods],
        idle_since={},
        max_provisioning_s=900,
    )
    [state] = view.pools
    phases = {n.name: (n.phase, n.used_gpus) for n in state.nodes}
    assert phases == {
        "ours": (NodePhase.DRAINING, 8),
        "admins": (NodePhase.DRAINING, 0),
        "drained": (NodePhase.DRAINING, 0),
        "ready": (NodePhase.READY, 8),
    }
    assert [n.name for n in consolidation.cordoned(state)] == ["ours"]
    assert view.used_gpus["admins"] == 8  # the GPUs are still counted as in use


def test_uncordon_leaves_a_node_without_the_mark_as_it_is() -> None:
    api = MemoryApi()
    kube = cast(Kube, api)
    admins = node("admins")
    admins["spec"]["unschedulable"] = True
    api.put(NODES, admins)
    assert not drain.uncordon(kube, "admins")
    still = api.peek(core_path("nodes", name="admins"))
    assert still is not None and still["spec"]["unschedulable"] is True

    api.put(NODES, node("ours"))
    drain.cordon(kube, "ours", T0)
    assert drain.uncordon(kube, "ours")
    after = api.peek(core_path("nodes", name="ours"))
    assert after is not None and "unschedulable" not in after["spec"]
    assert CONSOLIDATING_ANNOTATION not in after["metadata"]["annotations"]
    assert not drain.uncordon(kube, "ours")  # already back: nothing to do
    assert not drain.uncordon(kube, "gone")


def test_only_marked_cordoned_nodes_not_being_removed_count_as_consolidating() -> None:
    base = parse_node(node("n"))
    marked = replace(base, consolidating_since_s=T0, cordoned=True)
    assert marked.consolidating
    assert not replace(marked, cordoned=False).consolidating  # someone uncordoned it
    assert not replace(marked, draining_since_s=T0).consolidating  # its removal began
    assert not replace(marked, deleting=True).consolidating
    assert not replace(base, cordoned=True).consolidating  # an administrator's cordon
    assert drain.emptied([marked], {"n": 4}) == []
    assert drain.emptied([marked], {}) == [marked]
    assert drain.stale_marks([marked, replace(marked, cordoned=False)]) == [
        replace(marked, cordoned=False)
    ]


def test_nodes_awaiting_a_worker_are_those_of_unbound_and_new_placements() -> None:
    pods = [
        parse_pod(pod("bound", node="a", job_uid="j", index=0)),
        parse_pod(pod("pinned", assigned_node="b", phase="Pending", job_uid="j", index=1)),
        parse_pod(pod("done", assigned_node="c", phase="Succeeded", job_uid="k", index=0)),
    ]
    assert drain.awaiting_workers(pods, ["d"]) == {"b", "d"}
