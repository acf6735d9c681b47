"""Bounded retries with exponential backoff and full jitter, counted.

Every cloud call an adapter makes goes through one :class:`Retrier`, so there is exactly one
retry layer: the SDKs' own retries are switched off where the adapters build their clients
(two stacked layers multiply attempts, and their sleeps cannot be injected). Only
``ErrorKind.retryable`` errors (throttled, transient) are retried; the rest go straight
to the caller. ``sleep`` and ``rng`` are injectable so tests run without waiting and with
the same delays every time.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dlscaler.pool import ProviderError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    """Attempts per call, the first included; 1 means no retry."""
    base_delay_s: float = 0.5
    """Ceiling of the first backoff; each retry doubles it up to ``max_delay_s``."""
    max_delay_s: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError(
                f"need 0 <= base_delay_s <= max_delay_s, got {self.base_delay_s}, "
                f"{self.max_delay_s}"
            )


class RetryStats:
    """How many calls, attempts and retries an adapter made. Safe to share across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.attempts = 0
        self.retries = 0
        self.gave_up = 0
        """Calls that still failed with a retryable error after the last attempt."""
        self.retries_by_kind: Counter[str] = Counter()
        self.slept_s = 0.0

    def record(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def record_retry(self, kind: str, delay_s: float) -> None:
        with self._lock:
            self.retries += 1
            self.retries_by_kind[kind] += 1
            self.slept_s += delay_s

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "calls": self.calls,
                "attempts": self.attempts,
                "retries": self.retries,
                "gave_up": self.gave_up,
                "retries_by_kind": dict(self.retries_by_kind),
                "slept_s": self.slept_s,
            }


class Retrier:
    """Runs a call, retrying retryable :class:`ProviderError` with capped, jittered backoff."""

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        stats: RetryStats | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self.stats = stats or RetryStats()

    def backoff_s(self, retry_number: int, error: ProviderError) -> float:
        """Delay before retry ``retry_number`` (1-based): "full jitter", uniform in
        ``[0, min(max, base * 2**(n-1))]``, which spreads many clients apart better than
        a fixed or equal-jitter backoff; at least the cloud's Retry-After when it gave one."""
        p = self.policy
        ceiling = min(p.max_delay_s, p.base_delay_s * 2 ** (retry_number - 1))
        with self._rng_lock:
            delay = self._rng.uniform(0.0, ceiling)
        if error.retry_after_s is not None:
            delay = max(delay, min(error.retry_after_s, p.max_delay_s))
        return delay

    def call(self, fn: Callable[[], T]) -> T:
        self.stats.record(calls=1)
        attempt = 1
        while True:
            self.stats.record(attempts=1)
            try:
                return fn()
            except ProviderError as err:
                if not err.kind.retryable:
                    raise
                if attempt >= self.policy.max_attempts:
                    self.stats.record(gave_up=1)
                    err.message = f"{err.message} (gave up after {attempt} attempts)"
                    raise
                delay = self.backoff_s(attempt, err)
                self.stats.record_retry(err.kind.value, delay)
                self.sleep(delay)
                attempt += 1


def no_sleep(_seconds: float) -> None:
    """A ``sleep`` for tests: backoff is computed and counted, but nobody waits."""
