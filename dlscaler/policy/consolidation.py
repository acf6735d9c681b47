"""Consolidation for ``predictive``: let fragmented capacity empty and go away.

Jobs finish at random, so free GPUs end up scattered a few per node, and each node stays
alive for the one long job still on it: the idle timeout never removes it. When the
forecast says the capacity without a node stays above the upper quantile of demand (plus
``hysteresis_nodes`` nodes) until that node would be gone and a replacement booted, the
policy *cordons* the busy node whose gangs are expected to finish soonest
(``RunningGang.expected_end_s``, the runtime regression's estimate), and only if all of
them are expected to finish within ``consolidate_within_s``: a node whose jobs will run
long is never chosen. A cordoned node takes no new work and is removed as soon as it is
empty; no worker is ever evicted. Never a node a pending gang was planned onto, never in a
plan that grows a pool or leaves a pending gang waiting on a pool's limits, never below a
pool's minNodes.

When demand returns (a plan would grow a pool that has cordoned nodes), as few of those
nodes as make the growth unnecessary are put back in service (uncordoned; all of them if
the pool must grow anyway) and the plan is made again with them, instead of booting new
ones.

A cordoned node is a DRAINING node that still runs GPU work: the only kind this policy
makes (idle removals drain empty nodes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

from dlscaler.config import PolicyConfig
from dlscaler.model import NodePhase, NodeState, PoolState, RunningGang
from dlscaler.plan import NodeCordon
from dlscaler.policy.capacity import PoolView


def cordoned(pool: PoolState) -> list[NodeState]:
    """The pool's nodes that consolidation took out of service and that still run work."""
    return [n for n in pool.nodes if n.phase is NodePhase.DRAINING and n.used_gpus > 0]


def restored(pool: PoolState, names: Collection[str]) -> PoolState:
    """The pool with these cordoned nodes back in service."""
    back = {n.name for n in cordoned(pool)} & set(names)
    if not back:
        return pool
    nodes = tuple(replace(n, phase=NodePhase.READY) if n.name in back else n for n in pool.nodes)
    return replace(pool, nodes=nodes)


def latest_ends(running: Sequence[RunningGang]) -> dict[tuple[str, str], float]:
    """(pool, node) -> when the last gang on it is expected to finish (inf: unknown)."""
    out: dict[tuple[str, str], float] = {}
    for r in running:
        end = math.inf if r.expected_end_s is None else r.expected_end_s
        for node in r.nodes:
            key = (r.pool, node)
            out[key] = max(out.get(key, -math.inf), end)
    return out


def choose_cordons(
    views: Sequence[PoolView],
    running: Sequence[RunningGang],
    config: PolicyConfig,
    now_s: float,
    capacity_gpus: float,
    demand_until: Callable[[float], float],
) -> list[NodeCordon]:
    """Cordon busy nodes, soonest expected to empty first, while the capacity left stays
    above ``demand_until(t)`` (the upper quantile of demand from now until ``t`` plus a
    boot) with ``t`` the node's expected end, by ``hysteresis_nodes`` nodes. Marks them
    removed in ``views``."""
    p = config.predictive
    within_s = p.consolidate_within_s
    if within_s <= 0:
        return []
    ends = latest_ends(running)
    candidates: list[tuple[float, str, str, NodeState, PoolView]] = []
    for v in views:
        index = {name: i for i, name in enumerate(v.names) if name}
        for node in v.state.nodes:
            if node.phase is not NodePhase.READY or not node.used_gpus:
                continue  # idle nodes are the idle timeout's; in-flight ones run nothing yet
            if node.name in v.removed or index.get(node.name, -1) in v.reserved:
                continue  # a pending gang was planned onto it
            end = ends.get((v.state.name, node.name), math.inf)
            if end <= now_s + within_s:
                candidates.append((end, v.state.name, node.name, node, v))
    candidates.sort(key=lambda c: c[:3])
    out = []
    for end, pool, name, node, v in candidates:
        if v.planned_nodes <= v.state.spec.min_nodes:
            continue
        margin_gpus = p.hysteresis_nodes * v.state.spec.gpus_per_node
        demand_gpus = demand_until(end)
        if capacity_gpus - node.gpus < demand_gpus + margin_gpus:
            continue
        v.removed.add(name)
        capacity_gpus -= node.gpus
        out.append(
            NodeCordon(
                pool,
                name,
                f"{capacity_gpus:.0f} GPUs left cover the forecast's {demand_gpus:.0f} until "
                f"it is empty (its gangs are expected to finish within "
                f"{max(0.0, end - now_s):.0f}s)",
            )
        )
    return out
