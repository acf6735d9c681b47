"""The discrete-event loop, and nothing else: a clock and a heap of timestamped events.

Ties are broken deterministically: by time, then by the event kind's rank (so, at one
instant, jobs finish and nodes become ready before new decisions are taken), then by the
order events were scheduled. The model on top never touches the heap directly.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")


@dataclass(slots=True)
class Engine(Generic[P]):
    now_s: float = 0.0
    processed: int = 0
    _heap: list[tuple[float, int, int, P]] = field(default_factory=list)
    _seq: int = 0

    def schedule(self, at_s: float, rank: int, payload: P) -> None:
        """Schedule ``payload`` at ``at_s`` (never in the past)."""
        at_s = max(at_s, self.now_s)
        self._seq += 1
        heapq.heappush(self._heap, (at_s, rank, self._seq, payload))

    def pop_batch(self) -> list[P]:
        """Advance the clock to the next instant and return every event scheduled for it
        (in tie-break order). Events scheduled *for that same instant* while the batch is
        handled come in the next batch."""
        heap = self._heap
        if not heap:
            return []
        at_s = heap[0][0]
        self.now_s = at_s
        batch: list[P] = []
        while heap and heap[0][0] == at_s:
            batch.append(heapq.heappop(heap)[3])
        self.processed += len(batch)
        return batch

    def __len__(self) -> int:
        return len(self._heap)

    def peek_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None
