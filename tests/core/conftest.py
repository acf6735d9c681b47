"""Builders for hand-made policy snapshots: pools, nodes, gangs and configs with the
defaults the tests reason about (8-GPU nodes, 8 USD per node-hour, 300 s boot, 600 s idle
timeout), so each test states only what matters to it."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from dlscaler.config import PolicyConfig, PredictiveParams
from dlscaler.model import Gang, NodePhase, NodeState, PoolSpec, PoolState, RunningGang


class Snapshot:
    """``snap`` in the tests. Static methods only: a namespace, not state."""

    @staticmethod
    def spec(
        name: str = "pool",
        *,
        gpus_per_node: int = 8,
        max_nodes: int = 10,
        min_nodes: int = 0,
        price: float = 8.0,
        gpu_type: str = "",
        delay_s: float = 300.0,
        idle_timeout_s: float | None = None,
    ) -> PoolSpec:
        return PoolSpec(
            name=name,
            gpus_per_node=gpus_per_node,
            max_nodes=max_nodes,
            min_nodes=min_nodes,
            price_usd_per_hour=price,
            gpu_type=gpu_type,
            provisioning_delay_s=delay_s,
            idle_timeout_s=idle_timeout_s,
        )

    @staticmethod
    def ready(
        name: str, *, used: int = 0, idle_since_s: float | None = None, gpus: int = 8
    ) -> NodeState:
        """A ready node; an empty one is idle since t=0 unless told otherwise."""
        if used:
            idle_since_s = None
        elif idle_since_s is None:
            idle_since_s = 0.0
        return NodeState(name, NodePhase.READY, gpus, used_gpus=used, idle_since_s=idle_since_s)

    @staticmethod
    def in_flight(name: str, *, gpus: int = 8, ready_s: float | None = None) -> NodeState:
        return NodeState(name, NodePhase.IN_FLIGHT, gpus, expected_ready_s=ready_s)

    @staticmethod
    def draining(name: str, *, gpus: int = 8) -> NodeState:
        return NodeState(name, NodePhase.DRAINING, gpus)

    @staticmethod
    def pool(
        spec: PoolSpec,
        *nodes: NodeState,
        target_nodes: int | None = None,
        unavailable_until_s: float | None = None,
    ) -> PoolState:
        return PoolState(
            spec=spec,
            nodes=tuple(nodes),
            target_nodes=target_nodes,
            unavailable_until_s=unavailable_until_s,
        )

    @staticmethod
    def gang(
        job_id: str,
        *,
        workers: int = 1,
        gpus: int = 8,
        gpu_type: str = "",
        submit_s: float = 0.0,
        duration_s: float | None = None,
        priority: int = 0,
        queue: str = "default",
    ) -> Gang:
        """``gpus`` is per worker."""
        return Gang(
            job_id,
            submit_s,
            workers,
            gpus,
            gpu_type=gpu_type,
            duration_s=duration_s,
            priority=priority,
            queue=queue,
        )

    @staticmethod
    def running(
        gang: Gang, pool: str, *nodes: str, started_s: float = 0.0, end_s: float | None = None
    ) -> RunningGang:
        return RunningGang(gang, started_s, pool, tuple(nodes), expected_end_s=end_s)

    @staticmethod
    def config(policy: str = "reactive", **fields: Any) -> PolicyConfig:
        for mapping in ("fair_share_weights", "pool_priorities", "static_nodes"):
            if mapping in fields:
                fields[mapping] = MappingProxyType(dict(fields[mapping]))
        if "predictive" in fields and isinstance(fields["predictive"], dict):
            fields["predictive"] = replace(PredictiveParams(), **fields["predictive"])
        return PolicyConfig(policy=policy, **fields)


@pytest.fixture(scope="session")
def snap() -> type[Snapshot]:
    return Snapshot
