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
    """Offer pending gangs capacity in queue order; grow pools for those that do not fit."""
    notes: list[GangNote] = []

    def offer(gang: Gang) -> bool:
        notes.extend(capacity.provision_for([gang], views, config, now_s))
        return True  # every gang is considered once; a note records the ones left waiting

    offer_all(
        pending,
        config.queue_ordering,
        offer,
        running_gpus_by_queue=(
            running_gpus_by_queue(running) if config.queue_ordering == "fair-share" else None
        ),
        weights=config.fair_share_weights,
    )
    return notes


def decide_reactive(
    *,
    now_s: float,
    pools: Sequence[PoolState],
    pending: Sequence[Gang],
    running: Sequence[RunningGang],
    config: PolicyConfig,
) -> Plan:
    views = [capacity.PoolView.of(p) for p in pools]
    notes = provision_pending(pending, views, running, config, now_s)
    ups = capacity.scale_ups(views, "pending gangs do not fit")
    ups += capacity.ensure_min(views)
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
