"""Placing a gang's workers onto nodes: all workers or none, best fit.

Shared by the simulator (real placement on simulated nodes), by ``decide()`` (virtual
placement on free and in-flight capacity, so a gang that will fit on nodes already asked
for does not trigger another scale-up) and by the controller's admission.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dlscaler.model import PoolSpec


def place_workers(free_gpus: Sequence[int], workers: int, gpus_per_worker: int) -> list[int] | None:
    """Indices into ``free_gpus`` for each worker, or ``None`` if the gang does not fit.

    Best fit: each worker goes to the node with the least free GPUs that still holds it,
    which keeps whole nodes free for large gangs (less fragmentation). Workers of one gang
    may share a node. ``free_gpus`` is not modified.
    """
    if gpus_per_worker == 0:
        return []  # needs no GPU node
    if workers == 1:  # the common case, in one pass
        best, best_free = -1, math.inf
        for i, f in enumerate(free_gpus):
            if gpus_per_worker <= f < best_free:
                best, best_free = i, f
                if f == gpus_per_worker:
                    break
        return None if best < 0 else [best]
    total_room = sum(f // gpus_per_worker for f in free_gpus)
    if total_room < workers:
        return None
    free = list(free_gpus)
    chosen: list[int] = []
    for _ in range(workers):
        best = -1
        best_free = math.inf
        for i, f in enumerate(free):
            if gpus_per_worker <= f < best_free:
                best, best_free = i, f
                if f == gpus_per_worker:
                    break
        if best < 0:
            return None
        free[best] -= gpus_per_worker
        chosen.append(best)
    return chosen


def nodes_needed(workers: int, gpus_per_worker: int, gpus_per_node: int) -> int:
    """Fresh nodes of ``gpus_per_node`` needed for a gang (workers packed per node)."""
    if gpus_per_worker == 0:
        return 0
    per_node = gpus_per_node // gpus_per_worker
    if per_node == 0:
        raise ValueError(
            f"a worker of {gpus_per_worker} GPUs does not fit a {gpus_per_node}-GPU node"
        )
    return math.ceil(workers / per_node)


def admission_key(spec: PoolSpec) -> tuple[float, str]:
    """The order in which a gang's pools are tried when it is placed on free capacity:
    cheapest per GPU-hour first, ties by name, as the simulator's scheduler and the
    controller's admission try them."""
    return (spec.usd_per_gpu_hour, spec.name)
