"""Since when each node has held no GPU work: what the idle timeout is measured from.

Kept in memory and rebuilt after a restart from what the cluster still shows (when the
node became Ready, when the last pod on it finished), so a restarted controller neither
removes a busy node early nor waits a whole timeout again for a node idle for long.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controller.dljob import PodView
from controller.snapshot import NodeView


def last_finish_by_node(pods: Iterable[PodView]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pod in pods:
        if pod.node_name and pod.finished_s is not None:
            out[pod.node_name] = max(out.get(pod.node_name, 0.0), pod.finished_s)
    return out


@dataclass(slots=True)
class IdleTracker:
    idle_since: dict[str, float] = field(default_factory=dict)

    def update(
        self,
        now_s: float,
        nodes: Iterable[NodeView],
        used_gpus: Mapping[str, int],
        last_finish: Mapping[str, float],
    ) -> dict[str, float]:
        """Nodes that are ready and hold no GPU work -> since when; busy nodes are dropped."""
        current: dict[str, float] = {}
        for node in nodes:
            if not node.ready or used_gpus.get(node.name, 0) > 0:
                continue
            since = self.idle_since.get(node.name)
            if since is None:
                # First seen idle: it has been idle since it became ready or since its last
                # pod finished, whichever is later (never later than now).
                hints = [node.ready_since_s or now_s, last_finish.get(node.name, 0.0)]
                since = min(now_s, max(hints))
            current[node.name] = since
        self.idle_since = current
        return dict(current)

    def mark_busy(self, nodes: Iterable[str]) -> None:
        """Admission just put work on these nodes."""
        for name in nodes:
            self.idle_since.pop(name, None)
