"""The one decision function the controller and the simulator both call.

``decide()`` is pure: everything it knows is in its arguments (``now_s`` included), it
performs no I/O, and the same arguments always give the same Plan.
"""

from __future__ import annotations

from collections.abc import Sequence

from dlscaler.config import PolicyConfig
from dlscaler.model import EMPTY_FORECAST, Forecast, Gang, PoolState, RunningGang
from dlscaler.plan import Plan
from dlscaler.policy.oracle import decide_oracle
from dlscaler.policy.predictive import decide_predictive
from dlscaler.policy.reactive import decide_reactive
from dlscaler.policy.static_peak import decide_static_peak

__all__ = ["decide"]


def decide(
    *,
    now: float,
    pools: Sequence[PoolState],
    pending: Sequence[Gang],
    running: Sequence[RunningGang],
    forecast: Forecast = EMPTY_FORECAST,
    config: PolicyConfig,
) -> Plan:
    """Compute what should change: per-pool targets, nodes to remove, and why.

    ``pools`` in any order (the plan does not depend on it); ``pending`` are gangs waiting
    for capacity; ``running`` the gangs holding nodes; ``forecast`` the demand quantiles
    (and, for ``oracle`` only, the true future arrivals).
    """
    pools = sorted(pools, key=lambda p: p.name)
    if config.policy == "reactive":
        return decide_reactive(
            now_s=now, pools=pools, pending=pending, running=running, config=config
        )
    if config.policy == "predictive":
        return decide_predictive(
            now_s=now,
            pools=pools,
            pending=pending,
            running=running,
            forecast=forecast,
            config=config,
        )
    if config.policy == "static-peak":
        return decide_static_peak(pools=pools, pending=pending, config=config)
    if config.policy == "oracle":
        return decide_oracle(
            now_s=now,
            pools=pools,
            pending=pending,
            running=running,
            forecast=forecast,
            config=config,
        )
    raise ValueError(
        f"unknown policy {config.policy!r}; one of static-peak, reactive, predictive, oracle"
    )
