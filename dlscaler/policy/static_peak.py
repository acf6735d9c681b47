"""``static-peak``: a fixed fleet sized for the peak, never scaled down.

The baseline most teams start from. Nodes per pool come from ``config.static_nodes``
(the simulator fills it from the trace's peak demand); a pool not listed stays at its min.
"""

from __future__ import annotations

from collections.abc import Sequence

from dlscaler.config import PolicyConfig
from dlscaler.model import Gang, PoolState
from dlscaler.plan import Plan, ScaleUp
from dlscaler.policy import capacity


def decide_static_peak(
    *, pools: Sequence[PoolState], pending: Sequence[Gang], config: PolicyConfig
) -> Plan:
    views = [capacity.PoolView.of(p) for p in pools]
    ups: list[ScaleUp] = []
    for v in views:
        spec = v.state.spec
        want = min(spec.max_nodes, max(spec.min_nodes, config.static_nodes.get(spec.name, 0)))
        short = want - v.planned_nodes
        if short > 0:
            before = v.planned_nodes
            v.add_empty(short)
            ups.append(ScaleUp(spec.name, before, before + short, f"static fleet of {want} nodes"))
    notes = [
        capacity.why_not(g, views, 0.0)
        for g in pending
        if not any(v.state.spec.accepts(g) for v in views)
    ]
    return Plan(
        targets=capacity.targets(views),
        scale_ups=tuple(ups),
        removals=tuple(capacity.enforce_max(views)),
        notes=tuple(notes),
        policy="static-peak",
    )
