"""Room for the gangs that will arrive within one boot: sampled arrival scenarios.

A forecast of *total* GPU demand says how many GPUs will be wanted, not in what shape: 40
free GPUs spread one or two per node hold forty 1-GPU jobs but not one 2x8-GPU gang. And
a new gang waits for a boot exactly when the free capacity cannot hold it. So the
predictive policy also keeps room for *arrivals*, in their shapes.

The forecast carries ``arrival_scenarios``: the sets of gangs that arrived in recent past
windows as long as the lead time (the same time of day on earlier days, and the last few
hours). For each, :func:`extra_nodes` counts the nodes a pool would have to add to place
those gangs on the free GPUs it will have (ready and in-flight nodes, after the pending
gangs), workers best-fit as the scheduler places them. The policy provisions for the
``quantile`` of those counts: at 0.9, the arrivals of nine windows in ten would find room
without waiting for a boot.

Free capacity is kept as a histogram (nodes by free GPUs), so a scenario costs a few
operations per worker whatever the cluster size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dlscaler.model import Gang


def free_histogram(free: Sequence[int], gpus_per_node: int) -> list[int]:
    """``hist[f]`` = how many nodes have ``f`` free GPUs (``0 <= f <= gpus_per_node``)."""
    hist = [0] * (gpus_per_node + 1)
    for f in free:
        hist[min(max(f, 0), gpus_per_node)] += 1
    return hist


def extra_nodes(hist: Sequence[int], gangs: Sequence[Gang], gpus_per_node: int) -> int:
    """Fresh nodes needed to place every worker of ``gangs`` on top of ``hist``.

    Workers go largest first, each to the node with the least free GPUs that holds it
    (best fit, as :func:`dlscaler.placement.place_workers`); a worker that fits nowhere
    opens a fresh node. Workers larger than a node are ignored (no pool node holds them).
    """
    sizes = sorted(
        (g.gpus_per_worker for g in gangs for _ in range(g.workers)),
        reverse=True,
    )
    if not sizes:
        return 0
    h = list(hist)
    added = 0
    for size in sizes:
        if size <= 0 or size > gpus_per_node:
            continue
        for f in range(size, gpus_per_node + 1):
            if h[f]:
                h[f] -= 1
                h[f - size] += 1
                break
        else:
            added += 1
            h[gpus_per_node - size] += 1
    return added


BURST_QUANTILE = 0.99
"""The rarest windows a budget may pay room for: one in a hundred."""


def pick_outcome(outcomes: Sequence[tuple[float, int]], q: float, budget_nodes: int) -> int:
    """Which scenario outcome to provision for, given ``(cost, nodes)`` per scenario sorted
    by cost: the ``q``-quantile one, or a rarer one (up to :data:`BURST_QUANTILE`) whose
    nodes still fit in ``budget_nodes``: a large cluster can afford room for the bursts of
    a few windows in a hundred for a few percent of its nodes, a small one cannot. Returns
    an index into ``outcomes``."""
    n = len(outcomes)
    base = min(n, max(1, math.ceil(q * n))) - 1
    top = min(n, max(1, math.ceil(BURST_QUANTILE * n))) - 1
    for k in range(top, base, -1):
        if outcomes[k][1] <= budget_nodes:
            return k
    return base
