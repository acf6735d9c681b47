"""The simulator and the controller reach the same decision from the same cluster state.

One state is written down twice: as the simulator's model (pools of simulated nodes,
pending and running gangs) and as the Kubernetes objects a controller would read (Nodes,
pods, DLJobs, NodePools, the provider's group description). Each side then takes its own
path — the simulator its admission and ``_decide`` (with ``_apply`` captured), the
controller ``controller.planning.plan_pass`` — and the admissions and Plans must be equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from ctl_objects import T0, dljob, node, nodepool, pod

from controller.dljob import parse_dljob, parse_pod
from controller.planning import plan_pass
from controller.pools import nodepool_model
from controller.snapshot import PoolInput, parse_node
from dlscaler.config import PolicyConfig
from dlscaler.model import Gang, NodePhase, RunningGang
from dlscaler.plan import Plan
from dlscaler.pool import GroupDescription, Instance, InstanceState
from dlscaler.trace import Trace
from simulator.cluster import SimNode
from simulator.runner import Simulation

NOW = T0 + 3600.0


@dataclass
class N:
    """One node of the shared state."""

    name: str
    pool: str
    phase: NodePhase
    used: int = 0
    created_s: float = T0
    idle_since_s: float | None = None


@dataclass
class J:
    """One job of the shared state: pending, or running on ``nodes`` (one per worker)."""

    name: str
    workers: int
    gpus: int
    submit_s: float
    gpu_type: str = ""
    priority: int = 0
    nodes: tuple[str, ...] = ()


POOLS = [
    nodepool("cheap", gpu_type="a100", price=16.0, max_nodes=4, idle_timeout_s=600),
    nodepool("dear", gpu_type="a100", price=32.0, max_nodes=8, idle_timeout_s=600),
    nodepool("t4", gpu_type="t4", gpus_per_node=4, price=2.0, max_nodes=3),
]
STATES = {
    "mixed": (
        [
            N("cheap-1", "cheap", NodePhase.READY, used=8),
            N("cheap-2", "cheap", NodePhase.READY, used=0, idle_since_s=NOW - 700),
            N("cheap-3", "cheap", NodePhase.READY, used=0, idle_since_s=NOW - 100),
            N("cheap-4", "cheap", NodePhase.IN_FLIGHT, created_s=NOW - 60),
            N("dear-1", "dear", NodePhase.READY, used=4),
            N("t4-1", "t4", NodePhase.READY, used=0, idle_since_s=NOW - 5000),
            N("t4-2", "t4", NodePhase.READY, used=0, idle_since_s=NOW - 4000),
        ],
        [
            J("running", 1, 8, T0, "a100", nodes=("cheap-1",)),
            J("half", 1, 4, T0, "a100", nodes=("dear-1",)),
            J("fits-now", 1, 8, T0 + 10, "a100"),
            J("fits-in-flight", 1, 8, T0 + 20, "a100"),
            J("needs-two", 2, 8, T0 + 30, "a100"),
            J("big", 6, 8, T0 + 40, "a100", priority=3),
            J("no-such-type", 1, 8, T0 + 50, "h100"),
            J("small-t4", 2, 2, T0 + 60, "t4"),
        ],
    ),
    "empty-cluster": (
        [],
        [J("first", 2, 8, T0, "a100"), J("second", 1, 8, T0 + 1, "a100")],
    ),
}


def simulator_plan(nodes: list[N], jobs: list[J], config: PolicyConfig) -> tuple[list, Plan]:
    models = [nodepool_model(p) for p in POOLS]
    gangs = [
        Gang(f"ns/{j.name}", j.submit_s, j.workers, j.gpus, j.gpu_type, j.priority) for j in jobs
    ]
    sim = Simulation(Trace("same-plan", tuple(gangs), ()), models, config)
    for n in nodes:
        # Through the simulated pool's own bookkeeping, as its events would have done it.
        pool = sim.pool_by_name[n.pool]
        gpus = pool.spec.gpus_per_node
        sim_node = SimNode(n.name, gpus, n.created_s, n.created_s + pool.spec.provisioning_delay_s)
        pool.nodes[n.name] = sim_node
        pool.provisioned_gpus += gpus
        if n.phase is NodePhase.READY:
            pool.mark_ready(sim_node, n.idle_since_s or n.created_s)
            if n.used:
                pool.occupy([sim_node], n.used)
    for j, g in zip(jobs, gangs, strict=True):
        if j.nodes:
            pool = sim.pool_by_name[next(n.pool for n in nodes if n.name == j.nodes[0])]
            sim_nodes = [pool.nodes[name] for name in j.nodes]
            sim.running[g.job_id] = (RunningGang(g, T0, pool.spec.name, j.nodes), sim_nodes)
        else:
            sim.pending[g.job_id] = g
    sim._capacity_epoch = 1  # admit everything pending, as after a capacity change
    sim._admit(NOW)
    admitted = sorted(
        (gid, r.pool, r.nodes) for gid, (r, _) in sim.running.items() if r.started_s == NOW
    )
    plans: list[Plan] = []
    sim._apply = lambda plan, now: plans.append(plan)  # type: ignore[method-assign]
    sim._decide(NOW)
    return admitted, plans[0]


def controller_plan(nodes: list[N], jobs: list[J], config: PolicyConfig) -> tuple[list, Plan]:
    by_pool = {p["metadata"]["name"]: p for p in POOLS}
    node_objs = [
        node(n.name, pool=n.pool, gpus=by_pool[n.pool]["spec"]["gpusPerNode"],
             ready=n.phase is NodePhase.READY, created_s=n.created_s,
             provider_id=f"kwok://{n.pool}/{n.name}")
        for n in nodes
    ]  # fmt: skip
    pod_objs, job_objs = [], []
    for j in jobs:
        if j.nodes:
            status = {
                "phase": "Running",
                "workers": j.workers,
                "admittedTime": "2023-11-14T22:13:20Z",
                "workerStates": [{"index": i, "nodeName": n} for i, n in enumerate(j.nodes)],
            }
            job_objs.append(dljob(j.name, workers=j.workers, gpus_per_worker=j.gpus,
                                  gpu_type=j.gpu_type, priority=j.priority,
                                  created_s=j.submit_s, status=status))  # fmt: skip
            pod_objs += [
                pod(f"{j.name}-worker-{i}", node=n, gpus=j.gpus, job_uid=f"uid-ns-{j.name}",
                    index=i)
                for i, n in enumerate(j.nodes)
            ]  # fmt: skip
        else:
            job_objs.append(dljob(j.name, workers=j.workers, gpus_per_worker=j.gpus,
                                  gpu_type=j.gpu_type, priority=j.priority, created_s=j.submit_s,
                                  status={"phase": "Queued"}))  # fmt: skip
    inputs = []
    for p in POOLS:
        name = p["metadata"]["name"]
        members = [n.name for n in nodes if n.pool == name]
        desc = GroupDescription(
            name, 0, 100, len(members),
            tuple(Instance(f"kwok://{name}/{m}", InstanceState.RUNNING, m) for m in members),
        )  # fmt: skip
        inputs.append(PoolInput(nodepool_model(p), desc))
    idle = {n.name: n.idle_since_s for n in nodes if n.idle_since_s is not None}
    decided = plan_pass(
        now_s=NOW,
        jobs=[parse_dljob(j) for j in job_objs],
        pods=[parse_pod(p) for p in pod_objs],
        nodes=[parse_node(n) for n in node_objs],
        pools=inputs,
        idle_since=idle,
        config=config,
    )
    admitted = sorted((a.job.job_id, a.pool, a.nodes) for a in decided.admissions)
    return admitted, decided.plan


@pytest.mark.parametrize("state", sorted(STATES))
@pytest.mark.parametrize("ordering", ["fifo", "priority", "greedy", "fair-share"])
def test_simulator_and_controller_admit_the_same_gangs_and_make_the_same_plan(state, ordering):
    nodes, jobs = STATES[state]
    config = PolicyConfig(queue_ordering=ordering, idle_timeout_s=600)
    sim_admitted, sim_plan = simulator_plan(nodes, jobs, config)
    ctl_admitted, ctl_plan = controller_plan(nodes, jobs, config)
    assert ctl_admitted == sim_admitted
    assert ctl_plan == sim_plan
    if state == "mixed":
        # The state exercises every kind of decision, so equality is not trivially of
        # empty plans: admissions, a scale-up, a removal and an unschedulable note.
        assert sim_admitted
        assert sim_plan.scale_ups
        assert sim_plan.removals
        assert any(n.unschedulable for n in sim_plan.notes)
