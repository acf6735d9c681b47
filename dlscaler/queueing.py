"""Queue ordering when capacity is short: the order in which pending gangs are offered
capacity, for admission (simulator, controller) and for scale-up (``decide()``).

- ``fifo``: submit order; a gang that does not fit does not block later ones (backfill).
- ``priority``: higher ``priority`` first, then submit order.
- ``fair-share``: the queue with the least running GPUs per unit of weight goes next;
  weights per queue (default 1); within a queue, submit order.
- ``greedy``: largest gang (total GPUs) first, then submit order.

Every ordering backfills: gangs are all-or-nothing, so one that does not fit is passed
over and the next is tried; it keeps its place for the next pass.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping, Sequence

from dlscaler.model import Gang

Offer = Callable[[Gang], bool]
"""Tries to give a gang capacity; True when it was admitted (placed)."""


def _key_fifo(g: Gang) -> tuple[float, str]:
    return (g.submit_s, g.job_id)


def _key_priority(g: Gang) -> tuple[int, float, str]:
    return (-g.priority, g.submit_s, g.job_id)


def _key_greedy(g: Gang) -> tuple[int, float, str]:
    return (-g.total_gpus, g.submit_s, g.job_id)


_STATIC_KEYS: Mapping[str, Callable[[Gang], tuple[float | int | str, ...]]] = {
    "fifo": _key_fifo,
    "priority": _key_priority,
    "greedy": _key_greedy,
}


def ordered(pending: Sequence[Gang], ordering: str) -> list[Gang]:
    """The static orderings; ``fair-share`` depends on admissions and uses :func:`offer_all`."""
    try:
        key = _STATIC_KEYS[ordering]
    except KeyError:
        raise ValueError(
            f"queue ordering {ordering!r} has no static order; one of {sorted(_STATIC_KEYS)}"
        ) from None
    return sorted(pending, key=key)


def _fair_share(
    pending: Sequence[Gang],
    running_gpus_by_queue: Mapping[str, float],
    weights: Mapping[str, float],
    offer: Offer,
) -> list[Gang]:
    by_queue: dict[str, list[Gang]] = {}
    for g in sorted(pending, key=_key_fifo):
        by_queue.setdefault(g.queue, []).append(g)
    usage = {q: float(running_gpus_by_queue.get(q, 0.0)) for q in by_queue}
    # A heap of (usage/weight, queue); a queue whose head did not fit still gets its other
    # gangs tried (backfill) before we move on, so every gang is offered exactly once.
    heap = [(usage[q] / weights.get(q, 1.0), q) for q in sorted(by_queue)]
    heapq.heapify(heap)
    admitted: list[Gang] = []
    while heap:
        _, queue = heapq.heappop(heap)
        gangs = by_queue[queue]
        while gangs:
            gang = gangs.pop(0)
            if offer(gang):
                admitted.append(gang)
                usage[queue] += gang.total_gpus
                break
        if gangs:
            heapq.heappush(heap, (usage[queue] / weights.get(queue, 1.0), queue))
    return admitted


def offer_all(
    pending: Sequence[Gang],
    ordering: str,
    offer: Offer,
    *,
    running_gpus_by_queue: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
) -> list[Gang]:
    """Offer every pending gang capacity once, in the ordering's order; returns the admitted."""
    if ordering == "fair-share":
        return _fair_share(pending, running_gpus_by_queue or {}, weights or {}, offer)
    return [g for g in ordered(pending, ordering) if offer(g)]


def iter_ordered(pending: Sequence[Gang], ordering: str) -> Iterator[Gang]:
    """A static view of the order (fair-share: by queue weight only), for display."""
    if ordering == "fair-share":
        yield from sorted(pending, key=_key_fifo)
        return
    yield from ordered(pending, ordering)
