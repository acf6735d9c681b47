"""``predictive``: provision for a forecast quantile over the lead time, on top of the
reactive floor, with hysteresis; fall back to reactive when the forecast is not trusted.

- Floor: every pending gang is provisioned for exactly as ``reactive`` does.
- Ahead: if the forecast's ``quantile`` of GPU demand over the lead time
  (``lead_time_factor`` x the longest provisioning delay of the pools,
  :func:`.forecast_needs.lead_time_s`) exceeds planned capacity by more than
  ``hysteresis_nodes`` nodes, the cheapest available pools grow by the difference.
- Room for arrivals (``arrival_quantile`` > 0): the gangs of past lead-time windows are
  placed on the free capacity of every pool that takes them (:mod:`.scenarios`); each
  pool grows by the nodes it lacks, as the home of the gangs that found no room, for the
  ``arrival_quantile`` of the windows (rarer ones within ``arrival_budget``). An idle
  node past its timeout is kept if its own pool lacks room without it; a pool whose room
  was another pool's removed idle nodes grows in the same plan. A cordon that takes any
  pool's room is undone.
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
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

from dlscaler.config import PolicyConfig
from dlscaler.model import ANY_GPU_TYPE, Forecast, Gang, PoolState, RunningGang
from dlscaler.plan import NodeCordon, NodeRemoval, Plan, ScaleUp
from dlscaler.policy import capacity, consolidation, forecast_needs, scenarios
from dlscaler.policy.reactive import decide_reactive, provision_pending


def forecast_trusted(forecast: Forecast, config: PolicyConfig) -> bool:
    p = config.predictive
    if p.quantile not in forecast.quantiles or forecast.horizon_s() <= 0:
        return False
    ratio = forecast.recent_error_ratio
    return ratio is not None and math.isfinite(ratio) and ratio <= p.max_error_ratio


def _capacity_gpus(views: Sequence[capacity.PoolView]) -> int:
    return sum(v.planned_nodes * v.state.spec.gpus_per_node for v in views)


class _Room:
    """Room for arrivals within one plan: the arrival scenarios placed on the pools as the
    plan leaves them (:class:`.scenarios.ArrivalRoom`), idle nodes marked for removal (or
    cordoned) left out. A gang that finds no room is grown for in its home pool, the first
    in expander order that takes it, backed-off pools included (their nodes are room too;
    they just cannot grow)."""

    def __init__(
        self,
        views: Sequence[capacity.PoolView],
        arrivals: scenarios.ArrivalRoom,
        config: PolicyConfig,
    ) -> None:
        by_name = {v.state.name: v for v in views}
        self.ordered = [by_name[spec.name] for spec in arrivals.specs]  # expander order
        self.arrivals = arrivals
        self.quantile = config.predictive.arrival_quantile
        self.budget_share = config.predictive.arrival_budget
        self._indexes: dict[str, dict[str, int]] = {}

    @staticmethod
    def prepare(
        pools: Sequence[PoolState], forecast: Forecast, config: PolicyConfig
    ) -> scenarios.ArrivalRoom | None:
        """The scenarios sorted into runs for these pools, once per decision (every plan
        of it has the same pools); ``None`` when no room is kept for arrivals."""
        if (
            config.predictive.arrival_quantile <= 0
            or not forecast.arrival_scenarios
            or not forecast_trusted(forecast, config)
        ):
            return None
        order = capacity.pool_order([capacity.PoolView(state=p) for p in pools], None, config)
        return scenarios.ArrivalRoom([v.state.spec for v in order], forecast.arrival_scenarios)

    def _index(self, v: capacity.PoolView) -> dict[str, int]:
        # Built once: within a plan, entries are only ever appended, unnamed.
        index = self._indexes.get(v.state.name)
        if index is None:
            index = self._indexes[v.state.name] = {n: i for i, n in enumerate(v.names) if n}
        return index

    def shortfall(self, undone: Collection[tuple[str, str]] = ()) -> dict[str, int]:
        """Fresh nodes each home pool lacks for the chosen scenario; ``undone``: (pool, node)
        marked removed but counted as if they were not."""
        fragments: list[list[int]] = []
        whole: list[int] = []
        planned = 0
        for v in self.ordered:
            size = v.state.spec.gpus_per_node
            name = v.state.name
            planned += v.planned_nodes
            counts = Counter(v.free)
            if v.removed:
                index = self._index(v)
                for node in v.removed:
                    if (name, node) in undone:
                        planned += 1
                    elif node in index:
                        counts[v.free[index[node]]] -= 1
            hist = [0] * (size + 1)
            for f, n in counts.items():
                hist[min(max(f, 0), size)] += n
            whole.append(hist[size])  # whole free nodes; the rest are fragments
            hist[size] = 0
            fragments.append(hist)
        budget = math.floor(self.budget_share * planned)
        return self.arrivals.shortfall(fragments, whole, self.quantile, budget)

    def grow(self, short: dict[str, int], config: PolicyConfig, now_s: float) -> int:
        """Add up to ``short`` nodes per pool (those that can grow); how many were added."""
        added = 0
        for v in self.ordered:
            if not v.state.available(now_s):
                continue
            k = min(short.get(v.state.name, 0), v.headroom(config))
            if k > 0:
                v.add_empty(k)
                added += k
        return added

    def reason(self, added: int, replacing: int) -> str:
        if not added + replacing:
            return ""
        text = (
            f"room for the p{round(self.quantile * 100)} of arrivals within the lead time "
            f"({self.arrivals.windows} past windows): {added + replacing} node(s)"
        )
        if replacing:
            text += f", {replacing} in place of idle nodes of other pools removed"
        return text


def _keep_room(undoable: list[Any], room: _Room | None) -> None:
    """Put back the most recent of ``undoable`` (removals or cordons: each has ``pool`` and
    ``node``) in the pools short of room for arrivals, and only there, until none is. An
    idle node put back is one whole free node, so a pool short of ``n`` gets ``n`` at once.
    A node of one pool is never kept for another pool's arrivals (it grows instead:
    :func:`_replace_removed_room`)."""
    if room is None:
        return
    by_name = {v.state.name: v for v in room.ordered}
    while undoable:
        short = room.shortfall()
        back: list[int] = []
        for pool, n in short.items():
            mine = [i for i, u in enumerate(undoable) if u.pool == pool]
            back += mine[-n:]
        if not back:
            return
        for i in sorted(back, reverse=True):
            undone = undoable.pop(i)
            by_name[undone.pool].removed.discard(undone.node)


def _replace_removed_room(
    room: _Room | None, removals: Sequence[NodeRemoval], config: PolicyConfig, now_s: float
) -> int:
    """Grow each home pool by the room that ``removals`` in *other* pools take away (a dear
    pool's idle nodes were room for a cheap pool's arrivals): what it lacks now beyond what
    it lacked with the removals undone. Called after :func:`_keep_room`, which leaves no
    removal in a pool still short, so with one pool this adds nothing."""
    if room is None or not removals:
        return 0
    short = room.shortfall()
    if not short:
        return 0
    before = room.shortfall({(r.pool, r.node) for r in removals})
    return room.grow({p: n - before.get(p, 0) for p, n in short.items()}, config, now_s)


def _keep_others_room(cordons: list[NodeCordon], room: _Room | None) -> None:
    """Undo the most recent ``cordons`` while some pool lacks more room than it would with
    none of them: a cordoned node was room for another pool's arrivals. Called after
    :func:`_keep_room`, so with one pool there is nothing left to undo."""
    if room is None:
        return
    by_name = {v.state.name: v for v in room.ordered}
    while cordons:
        short = room.shortfall()
        if not short:
            return
        before = room.shortfall({(c.pool, c.node) for c in cordons})
        if all(n <= before.get(pool, 0) for pool, n in short.items()):
            return
        undone = cordons.pop()
        by_name[undone.pool].removed.discard(undone.node)


def decide_predictive(
    *,
    now_s: float,
    pools: Sequence[PoolState],
    pending: Sequence[Gang],
    running: Sequence[RunningGang],
    forecast: Forecast,
    config: PolicyConfig,
) -> Plan:
    arrivals = _Room.prepare(pools, forecast, config)
    plan = _plan(now_s, pools, pending, running, forecast, arrivals, config, may_cordon=True)
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
            arrivals,
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
    arrivals: scenarios.ArrivalRoom | None,
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
    lead_s = forecast_needs.lead_time_s(config, [s.spec for s in pools])
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
    # Room for arrivals: grown before idle nodes are removed, so that an idle node that is
    # room is kept rather than replaced by a fresh one.
    room = _Room(views, arrivals, config) if arrivals else None
    room_added = room.grow(room.shortfall(), config, now_s) if room else 0

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
    _keep_room(removals, room)
    replacing = _replace_removed_room(room, removals, config, now_s)
    room_reason = room.reason(room_added, replacing) if room else ""
    if room_reason:
        ahead_reason = f"{ahead_reason}; {room_reason}" if grew_for_demand else room_reason
    ups = list(floor_ups)
    for v in views:
        extra = v.added - added_before[v.state.name]
        if extra > 0:
            start = v.live_nodes + added_before[v.state.name]
            ups.append(ScaleUp(v.state.name, start, start + extra, ahead_reason))
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
        # Room for arrivals in their shapes is kept too: a cordon that takes it is undone
        # (this plan grows nothing, so also one that takes another pool's room).
        _keep_room(cordons, room)
        _keep_others_room(cordons, room)
    return Plan(
        targets=capacity.targets(views),
        scale_ups=tuple(ups),
        removals=tuple(removals),
        notes=tuple(notes),
        cordons=tuple(cordons),
        next_decision_s=next_expiry,
        policy="predictive",
    )
