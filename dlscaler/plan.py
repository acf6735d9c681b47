"""What ``decide()`` returns: per-pool targets, named node removals, and the reasons.

The controller applies a Plan through the providers and turns the reasons into Kubernetes
Events; the simulator applies the same Plan to its simulated pools and logs the reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class ScaleUp:
    pool: str
    from_nodes: int
    to_nodes: int
    reason: str
    job_ids: tuple[str, ...] = ()
    """The pending gangs this scale-up is for (empty for forecast or min-size growth)."""

    @property
    def added_nodes(self) -> int:
        return self.to_nodes - self.from_nodes


@dataclass(frozen=True, slots=True)
class NodeRemoval:
    pool: str
    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class NodeCordon:
    """A busy node taken out of service (or put back): it takes no new work and is removed
    once its gangs finish. No worker is ever evicted for it."""

    pool: str
    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class GangNote:
    """Why a pending gang is not being provisioned for right now."""

    job_id: str
    reason: str
    unschedulable: bool
    """True when no pool could ever run it (GPU type or worker size): retrying is pointless
    until the pools change. False when it waits on a limit (pool max, backed-off pool)."""


@dataclass(frozen=True, slots=True)
class Plan:
    targets: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Desired live (ready + in-flight) nodes per pool after the plan is applied."""
    scale_ups: tuple[ScaleUp, ...] = ()
    removals: tuple[NodeRemoval, ...] = ()
    notes: tuple[GangNote, ...] = ()
    cordons: tuple[NodeCordon, ...] = ()
    """Busy nodes to cordon so they empty and go (``predictive``'s consolidation)."""
    uncordons: tuple[NodeCordon, ...] = ()
    """Nodes cordoned earlier to put back in service, instead of booting new ones."""
    next_decision_s: float | None = None
    """The earliest time at which the policy knows it will want to act again (an idle
    timeout expiring, an arrival the oracle knows of). A hint: callers may decide sooner."""
    policy: str = ""
    fell_back: bool = False
    """The predictive policy distrusted its forecast and acted reactively."""

    @property
    def changes(self) -> bool:
        return bool(self.scale_ups or self.removals or self.cordons or self.uncordons)

    def reasons(self) -> list[str]:
        out = [
            f"{s.pool}: {s.from_nodes} -> {s.to_nodes} nodes: {s.reason}" for s in self.scale_ups
        ]
        out += [f"{r.pool}: remove {r.node}: {r.reason}" for r in self.removals]
        out += [f"{c.pool}: cordon {c.node}: {c.reason}" for c in self.cordons]
        out += [f"{c.pool}: uncordon {c.node}: {c.reason}" for c in self.uncordons]
        return out
