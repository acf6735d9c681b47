"""What no policy that starts every job on time can beat: the no-wait repacking bound.

If every job starts at its submit time (wait 0) and the scheduler could move running
workers between nodes for free at every instant, a pool of ``G``-GPU nodes needs
``ceil(D(t) / G)`` nodes at time ``t``, where ``D(t)`` is the GPUs of the jobs running
then. Nodes boot instantly and vanish the moment they are not needed. Any real policy
whose jobs all start at submit (so ``D(t)`` is the same) holds at least that many nodes at
every instant: it cannot repack, and its nodes boot and idle. So

    bound = integral of ceil(D(t) / G) * G dt        (GPU-hours)

is a lower bound on the GPU-hours (and, at the cheapest GPU-hour price, the cost) of any
policy with zero waits. A policy can go below it only by making jobs wait.

With pools of different node sizes the ceiling is dropped (``G = 1``): still a bound, but
a loose one. Jobs that no pool can run are left out, as the simulator leaves them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from dlscaler.config import PoolModel
from dlscaler.trace import Trace
from simulator.plot import trace_demand


@dataclass(frozen=True, slots=True)
class Bound:
    gpu_hours: float
    cost_usd: float
    node_gpus: int
    """The ``G`` of the ceiling: the pools' common node size, or 1 if they differ."""

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "name": "no-wait repacking bound",
            "gpu_hours": self.gpu_hours,
            "cost_usd": self.cost_usd,
            "node_gpus": self.node_gpus,
            "meaning": "least GPU-hours of any policy that starts every job at its submit "
            "time, even with free live migration and instant boots",
        }


def no_wait_bound(trace: Trace, pools: Sequence[PoolModel]) -> Bound:
    if not pools:
        raise ValueError("no_wait_bound needs at least one pool")
    sizes = {p.gpus_per_node for p in pools}
    node_gpus = sizes.pop() if len(sizes) == 1 else 1
    usd_per_gpu_hour = min(p.price_usd_per_hour / p.gpus_per_node for p in pools)
    runnable = [
        j
        for j in trace.jobs
        if any(j.fits_gpu_type(p.gpu_type) and j.gpus_per_worker <= p.gpus_per_node for p in pools)
    ]
    if not runnable:
        return Bound(0.0, 0.0, node_gpus)
    times = np.unique(
        [t for j in runnable for t in (j.submit_s, j.submit_s + (j.duration_s or 0.0))]
    )
    # GPUs running on [times[i], times[i + 1])
    demand = trace_demand(replace(trace, jobs=tuple(runnable)), times[:-1])
    nodes = np.ceil(demand / node_gpus - 1e-9)
    gpu_seconds = float(np.sum(nodes * node_gpus * np.diff(times)))
    gpu_hours = gpu_seconds / 3600.0
    return Bound(gpu_hours, gpu_hours * usd_per_gpu_hour, node_gpus)
