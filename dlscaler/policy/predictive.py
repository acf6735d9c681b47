"""``predictive``: provision for a forecast quantile over the lead time, on top of the
reactive floor, with hysteresis; fall back to reactive when the forecast is not trusted.

- Floor: every pending gang is provisioned for exactly as ``reactive`` does.
- Ahead: if the forecast's ``quantile`` of GPU demand over the next
  ``lead_time_factor`` x provisioning delay exceeds planned capacity by more than
  ``hysteresis_nodes`` nodes, the cheapest available pools grow by the difference.
- Down: an idle node past its timeout is removed only while capacity stays above the
  forecast's ``scale_down_quantile`` of demand over the next idle-timeout window and
  above the ``quantile`` it grows for over the lead time (a node removed below that would
  be booted again).
- Consolidate (``consolidate_within_s`` > 0): while capacity without it stays above the
  forecast's ``quantile`` (by ``hysteresis_nodes``) until it is empty and a replacement
  could boot, the busy node whose gangs are expected to finish soonest (all within
  ``consolidate_within_s``) is cordoned, so it empties and goes; when a plan would grow a
  pool, its cordoned nodes are put back in service first (:mod:`.consolidation`).
- Trust: a forecast whose ``recent_error_ratio`` (vs the naive baseline) is missing or above
  ``max_error_ratio`` is ignored, and the plan says it fell back.

The forecast is of total GPU demand; it is applied to pools that accept any GPU type (or,
if none, all pools) in expander order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from dlscaler.config import PolicyConfig
from dlscaler.model import ANY_GPU_TYPE, Forecast, Gang, PoolState, RunningGang
from dlscaler.plan import NodeCordon, Plan, ScaleUp
from dlscaler.policy import capacity, consolidation, scenarios
from dlscaler.policy.reactive import decide_reactive, provision_pending


def forecast_trusted(forecast: Forecast, config: PolicyConfig) -> bool:
    p = config.predictive
    if p.quantile not in forecast.quantiles or forecast.horizon_s() <= 0:
        return False
    ratio = forecast.recent_error_ratio
    return ratio is not None and math.isfinite(ratio) and ratio <= p.max_error_ratio


def _capacity_gpus(views: Sequence[capacity.PoolView]) -> int:
    return sum(v.planned_nodes * v.state.spec.gpus_per_node for v in views)


def _arrival_shortfall(
    views: Sequence[capacity.PoolView], forecast: Forecast, config: PolicyConfig, now_s: float
) -> dict[str, int]:
    """Nodes each pool lacks for the chosen scenario of arrivals, idle nodes marked for
    removal (or cordoned) left out.

    A scenario's *room* is what it needs beyond the pools' fragments (the free GPUs of
    partly used nodes): whole free nodes, or fresh ones, which the histogram treats alike.
    The quantile (and the budget for rarer bursts) is taken over that room, not over what
    is still missing, so room already held never makes a rarer scenario look affordable.
    Gangs go to the first pool in expander order that takes them, backed-off pools
    included (their nodes are room too; they just cannot grow)."""
    q = config.predictive.arrival_quantile
    if q <= 0 or not forecast.arrival_scenarios:
        return {}
    ordered = capacity.pool_order(views, None, config)
    fragments: dict[str, list[int]] = {}
    whole: dict[str, int] = {}
    for v in ordered:
        size = v.state.spec.gpus_per_node
        free = [
            f for f, name in zip(v.free, v.names, strict=True) if not name or name not in v.removed
        ]
        whole[v.state.name] = sum(1 for f in free if f >= size)
        fragments[v.state.name] = scenarios.free_histogram([f for f in free if f < size], size)
    outcomes: list[tuple[float, dict[str, int]]] = []
    for scenario in forecast.arrival_scenarios:
        by_pool: dict[str, list[Gang]] = {}
        for gang in scenario:
            home = next((v for v in ordered if v.state.spec.accepts(gang)), None)
            if home is not None:
                by_pool.setdefault(home.state.name, []).append(gang)
        room: dict[str, int] = {}
        cost = 0.0
        for v in ordered:
            gangs = by_pool.get(v.state.name)
            if gangs:
                spec = v.state.spec
                n = scenarios.extra_nodes(fragments[spec.name], gangs, spec.gpus_per_node)
                if n:
                    room[spec.name] = n
                    cost += n * spec.price_usd_per_hour
        outcomes.append((cost, room))
    outcomes.sort(key=lambda o: o[0])
    planned = sum(v.planned_nodes for v in ordered)
    budget = math.floor(config.predictive.arrival_budget * planned)
    k = scenarios.pick_outcome([(cost, sum(room.values())) for cost, room in outcomes], q, budget)
    return {name: n - whole[name] for name, n in outcomes[k][1].items() if n > whole[name]}


def _keep_room(
    undoable: list[Any],
    views: Sequence[capacity.PoolView],
    forecast: Forecast,
    config: PolicyConfig,
    now_s: float,
) -> None:
    """Put back the most recent of ``undoable`` (removals or cordons: each has ``pool`` and
    ``node``) in the pools short of room for arrivals, and only there, until none is. An
    idle node put back is one whole free node, so a pool short of ``n`` gets ``n`` at once."""
    by_name = {v.state.name: v for v in views}
    while undoable:
        short = _arrival_shortfall(views, forecast, config, now_s)
        back: list[int] = []
        for pool, n in short.items():
            mine = [i for i, u in enumerate(undoable) if u.pool == pool]
            back += mine[-n:]
        if not back:
            return
        for i in sorted(back, reverse=True):
            undone = undoable.pop(i)
            by_name[undone.pool].removed.discard(undone.node)


def _room_for_arrivals(
    views: Sequence[capacity.PoolView], forecast: Forecast, config: PolicyConfig, now_s: float
) -> str:
    """Grow pools so the ``arrival_quantile`` scenario of arrivals would find room; the
    reason, or "" if nothing was added."""
    per_pool = _arrival_shortfall(views, forecast, config, now_s)
    if not per_pool:
        return ""
    added = 0
    for v in views:
        if not v.state.available(now_s):
            continue
        k = min(per_pool.get(v.state.name, 0), v.headroom(config))
        if k > 0:
            v.add_empty(k)
            added += k
    if not added:
        return ""
    q = config.predictive.arrival_quantile
    return (
        f"room for the p{round(q * 100)} of arrivals within the lead time "
        f"({len(forecast.arrival_scenarios)} past windows): {added} node(s)"
    )


def decide_predictive(
    *,
    now_s: float,
    pools: Sequence[PoolState],
    pending: Sequence[Gang],
    running: Sequence[RunningGang],
    forecast: Forecast,
    config: PolicyConfig,
) -> Plan:
    plan = _plan(now_s, pools, pending, running, forecast, config, may_cordon=True)
    growing = {up.pool for up in plan.scale_ups}
    # Demand is back where nodes were cordoned: put back as few of them as make the growth
    # unnecessary (the roomiest first; 1, 2, 4, ... then all), planning again with them and
    # never cordoning in the same plan (that would flap).
    back = sorted(
        ((p.name, n) for p in pools if p.name in growing for n in consolidation.cordoned(p)),
        key=lambda pn: (pn[1].used_gpus - pn[1].gpus, pn[0], pn[1].name),
    )
    count = 1
    while back:
        chosen = back[: min(count, len(back))]
        names = {(pool, n.name) for pool, n in chosen}
        trial = _plan(
            now_s,
            [consolidation.restored(p, {n for pool, n in names if pool == p.name}) for p in pools],
            pending,
            running,
            forecast,
            config,
            may_cordon=False,
        )
        if len(chosen) == len(back) or not {up.pool for up in trial.scale_ups} & growing:
            reason = "demand is back: in service again instead of a new node"
            return replace(
                trial, uncordons=tuple(NodeCordon(pool, n.name, reason) for pool, n in chosen)
            )
        count *= 2
    return plan


def _plan(
    now_s: float,
    pools: Sequence[PoolState],
    pending: Sequence[Gang],
    running: Sequence[RunningGang],
    forecast: Forecast,
    config: PolicyConfig,
    *,
    may_cordon: bool,
) -> Plan:
    if not forecast_trusted(forecast, config):
        plan = decide_reactive(
            now_s=now_s, pools=pools, pending=pending, running=running, config=config
        )
        return replace(plan, policy="predictive", fell_back=True)
    p = config.predictive
    views = [capacity.PoolView.of(s) for s in pools]
    floor_ups = capacity.ensure_min(views)
    notes = provision_pending(pending, views, running, config, now_s)
    floor_ups += capacity.scale_ups(views, "pending gangs do not fit")
    for v in views:  # what the floor added is reported; start the forecast's count afresh
        v.gangs_for_added.clear()
    added_before = {v.state.name: v.added for v in views}

    general = [v for v in views if v.state.spec.gpu_type == ANY_GPU_TYPE] or list(views)
    lead_s = p.lead_time_factor * max(
        (v.state.spec.provisioning_delay_s for v in general), default=0.0
    )
    want_gpus = forecast.quantile_max(p.quantile, now_s + max(lead_s, forecast.step_s))
    want_gpus += p.headroom_gpus
    gap = want_gpus - _capacity_gpus(views)
    ahead_reason = (
        f"forecast p{round(p.quantile * 100)} of {want_gpus:.0f} GPUs within "
        f"{lead_s:.0f}s ({forecast.model or 'forecast'})"
    )
    ordered = capacity.pool_order(general, None, config)
    smallest = min((v.state.spec.gpus_per_node for v in ordered), default=1)
    if gap > p.hysteresis_nodes * smallest:
        for v in ordered:
            if gap <= 0:
                break
            if not v.state.available(now_s):
                continue
            k = min(v.headroom(config), math.ceil(gap / v.state.spec.gpus_per_node))
            if k > 0:
                v.add_empty(k)
                gap -= k * v.state.spec.gpus_per_node

    grew_for_demand = any(v.added > added_before[v.state.name] for v in views)
    room_reason = _room_for_arrivals(views, forecast, config, now_s)
    if room_reason:
        ahead_reason = f"{ahead_reason}; {room_reason}" if grew_for_demand else room_reason

    ups = list(floor_ups)
    for v in views:
        extra = v.added - added_before[v.state.name]
        if extra > 0:
            start = v.live_nodes + added_before[v.state.name]
            ups.append(ScaleUp(v.state.name, start, start + extra, ahead_reason))

    removals, next_expiry = capacity.remove_idle(views, config, now_s)
    keep_gpus = forecast.quantile_max(p.scale_down_quantile, now_s + config.idle_timeout_s)
    # Never shrink below what the growth rule above asks for: the node would be booted
    # again at a later decision (or, in a plan that grows, ready nodes would be swapped
    # for booting ones).
    keep_gpus = max(keep_gpus, want_gpus)
    by_name = {v.state.name: v for v in views}
    while removals and _capacity_gpus(views) < keep_gpus:
        undone = removals.pop()  # the most recently idle goes back first
        by_name[undone.pool].removed.discard(undone.node)
    _keep_room(removals, views, forecast, config, now_s)
    removals += capacity.enforce_max(views)
    cordons: list[NodeCordon] = []
    # Not while anything grows, nor while a pending gang waits on a pool's limits.
    if may_cordon and not ups and all(n.unschedulable for n in notes):
        step_s = forecast.step_s

        def demand_until(end_s: float) -> float:
            # Until the node is gone and a replacement could be booted.
            until_s = max(end_s, now_s) + max(lead_s, step_s)
            return max(keep_gpus, forecast.quantile_max(p.quantile, until_s) + p.headroom_gpus)

        cordons = consolidation.choose_cordons(
            views, running, config, now_s, _capacity_gpus(views), demand_until
        )
        # Room for arrivals in their shapes is kept too: a cordon that takes it is undone.
        _keep_room(cordons, views, forecast, config, now_s)
    return Plan(
        targets=capacity.targets(views),
        scale_ups=tuple(ups),
        removals=tuple(removals),
        notes=tuple(notes),
        cordons=tuple(cordons),
        next_decision_s=next_expiry,
        policy="predictive",
    )
