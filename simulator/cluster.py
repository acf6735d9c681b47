"""Simulated node pools: nodes that boot (or fail to), hold gang workers, and bill.

A node bills from the moment it is asked for until it is removed, like cloud instances do
(boot time is paid for). Placement is the core's best fit, all workers of a gang in one pool.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field

from dlscaler.config import PoolModel
from dlscaler.model import Gang, NodePhase, NodeState, PoolSpec, PoolState
from dlscaler.placement import place_workers


@dataclass(slots=True)
class SimNode:
    name: str
    gpus: int
    created_s: float
    ready_s: float
    phase: NodePhase = NodePhase.IN_FLIGHT
    used_gpus: int = 0
    idle_since_s: float | None = None
    fails_boot: bool = False
    cached: NodeState | None = None
    """The last snapshot of this node; cleared by every change (see SimPool)."""

    def state(self) -> NodeState:
        if self.cached is None:
            self.cached = self._state()
        return self.cached

    def _state(self) -> NodeState:
        return NodeState(
            name=self.name,
            phase=self.phase,
            gpus=self.gpus,
            used_gpus=self.used_gpus,
            created_s=self.created_s,
            idle_since_s=self.idle_since_s,
            expected_ready_s=self.ready_s if self.phase is NodePhase.IN_FLIGHT else None,
        )


@dataclass(slots=True)
class SimPool:
    model: PoolModel
    spec: PoolSpec
    rng: random.Random
    nodes: dict[str, SimNode] = field(default_factory=dict)
    serial: int = 0
    node_seconds: float = 0.0
    """Billed node-seconds of nodes already removed (live ones are added at the end)."""
    boot_failures: int = 0
    scale_ups: int = 0
    removals: int = 0
    ready_free_gpus: int = 0
    """Free GPUs on ready nodes, kept up to date so a gang that cannot fit is turned away
    without looking at every node."""
    ready_gpus: int = 0
    provisioned_gpus: int = 0
    _ready: list[SimNode] | None = None
    """The ready nodes in creation order, rebuilt after a node becomes ready or goes."""

    @classmethod
    def of(cls, model: PoolModel, seed: int) -> SimPool:
        # A stream per pool, derived from the run's seed and the pool's name, so adding a
        # pool does not change the draws of the others.
        stream = random.Random(seed * 1_000_003 + zlib.crc32(model.name.encode()))
        return cls(model=model, spec=model.to_spec(), rng=stream)

    def draw_delay_s(self) -> float:
        sim = self.model.simulation
        base = self.spec.provisioning_delay_s
        if sim.delay_distribution == "uniform":
            return max(
                0.0, self.rng.uniform(base * (1 - sim.delay_spread), base * (1 + sim.delay_spread))
            )
        if sim.delay_distribution == "lognormal" and base > 0:
            return self.rng.lognormvariate(math.log(base), sim.delay_spread)
        return base

    def add_nodes(self, count: int, now_s: float, *, instant: bool = False) -> list[SimNode]:
        """``instant``: nodes of the cluster the trace began with, ready at once."""
        out = []
        failure_rate = 0.0 if instant else self.model.simulation.boot_failure_rate
        for _ in range(count):
            self.serial += 1
            delay = 0.0 if instant else self.draw_delay_s()
            node = SimNode(
                name=f"{self.spec.name}-{self.serial:06d}",
                gpus=self.spec.gpus_per_node,
                created_s=now_s,
                ready_s=now_s + delay,
                fails_boot=failure_rate > 0 and self.rng.random() < failure_rate,
            )
            self.nodes[node.name] = node
            self.provisioned_gpus += node.gpus
            out.append(node)
        self.scale_ups += 1 if count else 0
        return out

    def remove(self, name: str, now_s: float) -> None:
        node = self.nodes.pop(name)
        self._ready = None
        self.node_seconds += now_s - node.created_s
        self.provisioned_gpus -= node.gpus
        if node.phase is NodePhase.READY:
            self.ready_gpus -= node.gpus
            self.ready_free_gpus -= node.gpus - node.used_gpus

    def mark_ready(self, node: SimNode, now_s: float) -> None:
        self._ready = None
        node.phase = NodePhase.READY
        node.idle_since_s = now_s
        node.cached = None
        self.ready_gpus += node.gpus
        self.ready_free_gpus += node.gpus - node.used_gpus

    def occupy(self, nodes: list[SimNode], gpus_per_worker: int) -> None:
        for node in nodes:
            node.used_gpus += gpus_per_worker
            node.idle_since_s = None
            node.cached = None
        self.ready_free_gpus -= gpus_per_worker * len(nodes)

    def release(self, nodes: list[SimNode], gpus_per_worker: int, now_s: float) -> None:
        for node in nodes:
            node.used_gpus -= gpus_per_worker
            node.cached = None
            if node.used_gpus == 0:
                node.idle_since_s = now_s
            if node.phase is NodePhase.READY:  # a cordoned node's GPUs are not on offer
                self.ready_free_gpus += gpus_per_worker

    def cordon(self, node: SimNode) -> None:
        """Take a ready node out of service: it takes no new work and still bills."""
        self._ready = None
        node.phase = NodePhase.DRAINING
        node.cached = None
        self.ready_gpus -= node.gpus
        self.ready_free_gpus -= node.gpus - node.used_gpus

    def uncordon(self, node: SimNode) -> None:
        """Put a cordoned node back in service."""
        self._ready = None
        node.phase = NodePhase.READY
        node.cached = None
        self.ready_gpus += node.gpus
        self.ready_free_gpus += node.gpus - node.used_gpus

    def live_count(self) -> int:
        return sum(1 for n in self.nodes.values() if n.phase is not NodePhase.DRAINING)

    def snapshot(self) -> PoolState:
        return PoolState(
            spec=self.spec,
            nodes=tuple(n.state() for n in self.nodes.values()),
        )

    def try_place(self, gang: Gang) -> list[SimNode] | None:
        """Place a gang on ready nodes (best fit); the nodes per worker, or None."""
        if self.ready_free_gpus < gang.total_gpus or not self.spec.accepts(gang):
            return None
        if self._ready is None:
            self._ready = [n for n in self.nodes.values() if n.phase is NodePhase.READY]
        ready = self._ready
        chosen = place_workers(
            [n.gpus - n.used_gpus for n in ready], gang.workers, gang.gpus_per_worker
        )
        if chosen is None:
            return None
        return [ready[i] for i in chosen]

    def billed_node_seconds(self, end_s: float) -> float:
        return self.node_seconds + sum(end_s - n.created_s for n in self.nodes.values())
