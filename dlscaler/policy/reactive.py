"""``reactive``: what cluster-autoscaler does for GPU gangs.

Scale up for pending gangs that fit nowhere (counting in-flight nodes as capacity, so the
same gang never triggers two scale-ups), and remove nodes idle longer than the timeout,
never below a pool's min.
"""

from __future__ import annotations

from collections.abc import Sequence

from dlscaler.config import PolicyConfig
from dlscaler.model import Gang, PoolState, RunningGang
from dlscaler.plan import GangNote, Plan
from dlscaler.policy import capacity
from dlscaler.queueing import offer_all


def running_gpus_by_queue(running: Sequence[RunningGang]) -> dict[str, float]:
    usage: dict[str, float] = {}
    for r in running:
        usage[r.gang.queue] = usage.get(r.gang.queue, 0.0) + r.gang.total_gpus
    return usage


def provision_pending(
    pending: Sequence[Gang],
    views: Sequence[capacity.PoolView],
    running: Sequence[RunningGang],
    config: PolicyConfig,
    now_s: float,
) -> list[GangNote]:
    """Plan capacity for every pending gang; grow pools for those that fit nowhere.

    First the ready nodes, offered in queue order as the scheduler will offer them. Then,
    for the gangs left, nodes in flight or new ones; there the gangs that the fewest pools
    accept go first (queue order among equals), so capacity grown for a gang only one pool
    can run is not taken by a gang that could run elsewhere, and planning again on the same
    snapshot plus the nodes asked for asks for nothing more.
    """
    usage = running_gpus_by_queue(running) if config.queue_ordering == "fair-share" else None
    waiting: list[Gang] = []

    def on_ready_nodes(gang: Gang) -> bool:
        ordered_views = capacity.pool_order(views, gang, config)
        if any(v.place(gang, ready_only=True) for v in ordered_views):
            return True
        waiting.append(gang)
        return False

    offer_all(
        pending,
        config.queue_ordering,
        on_ready_nodes,
        running_gpus_by_queue=usage,
        weights=config.fair_share_weights,
    )
    # Queue order for growth, each waiting gang counted as served (so fair-share takes
    # turns between queues rather than growing for one queue's whole backlog first).
    in_turn: list[Gang] = []

    def take_turn(gang: Gang) -> bool:
        in_turn.append(gang)
        return True

    offer_all(
        waiting,
        config.queue_ordering,
        take_turn,
        running_gpus_by_queue=usage,
        weights=config.fair_share_weights,
    )
    accepting = {g.job_id: sum(1 for v in views if v.state.spec.accepts(g)) for g in in_turn}
    in_turn.sort(key=lambda g: accepting[g.job_id])  # stable: queue order among equals
    return capacity.provision_for(in_turn, views, config, now_s)


def decide_reactive(
    *,
    now_s: float,
    pools: Sequence[PoolState],
    pending: Sequence[Gang],
    running: Sequence[RunningGang],
    config: PolicyConfig,
) -> Plan:
    views = [capacity.PoolView.of(p) for p in pools]
    ups = capacity.ensure_min(views)
    notes = provision_pending(pending, views, running, config, now_s)
    ups += capacity.scale_ups(views, "pending gangs do not fit")
    removals, next_expiry = capacity.remove_idle(views, config, now_s)
    removals += capacity.enforce_max(views)
    return Plan(
        targets=capacity.targets(views),
        scale_ups=tuple(ups),
        removals=tuple(removals),
        notes=tuple(notes),
        next_decision_s=next_expiry,
        policy="reactive",
    )
