"""Arrival scenarios: the gangs that arrived in past windows as long as the lead time.

The predictive policy keeps room for a quantile of them (``dlscaler.policy.scenarios``).
The windows are taken at the same time of day on each of the last ``days`` days (and
``offsets`` windows either side of it, ``step_s`` apart), which follows daily cycles, and in
the last ``recent`` windows, which follows a burst under way. A window that began before the
first arrival seen is left out: it is not a sample of anything; so is one that began at or
before a time marked with :meth:`ArrivalWindows.mark_incomplete_until` (arrivals of that time
were forgotten, so it would look quieter than it was). The simulator and the controller
both feed it each gang as it is submitted.
"""

from __future__ import annotations

import bisect

from dlscaler.model import Gang

DAY_S = 86_400.0


class ArrivalWindows:
    """The arrival scenarios of a forecast: the gangs submitted in past windows of the lead
    time's length, at the same time of day on each of the last ``days`` days (``offsets``
    windows either side, a ``step_s`` apart) and in the last ``recent`` windows."""

    def __init__(
        self,
        window_s: float,
        *,
        step_s: float = 300.0,
        days: int = 7,
        offsets: int = 6,
        recent: int = 24,
    ) -> None:
        if window_s <= 0:
            raise ValueError(f"arrival window must be positive, got {window_s}")
        self.window_s = window_s
        self.step_s = step_s
        self.days = days
        self.offsets = offsets
        self.recent = recent
        self._times: list[float] = []
        self._gangs: list[Gang] = []
        self._first = 0
        self._first_seen: float | None = None
        """The first arrival ever observed: windows that began before it sample nothing.
        Kept when old arrivals are forgotten, so quiet days stay samples of quiet days."""
        self._incomplete_until: float | None = None
        """Windows that began at or before this miss arrivals: not samples."""

    def mark_history_since(self, time_s: float) -> None:
        """Arrivals have been watched since ``time_s`` (before the first one still held,
        say after a restart): windows from then on are samples, quiet ones too."""
        if self._first_seen is None or time_s < self._first_seen:
            self._first_seen = time_s

    def mark_incomplete_until(self, time_s: float) -> None:
        """Arrivals up to ``time_s`` may be missing (left out of a capped record, dropped
        from memory): windows that begin at or before it are no longer samples."""
        if self._incomplete_until is None or time_s > self._incomplete_until:
            self._incomplete_until = time_s

    def observe(self, gang: Gang) -> None:
        if self._first_seen is None:
            self._first_seen = gang.submit_s
        self._times.append(gang.submit_s)
        self._gangs.append(gang)

    def scenarios(self, now_s: float) -> tuple[tuple[Gang, ...], ...]:
        keep_from = now_s - (self.days * DAY_S + self.offsets * self.step_s + self.window_s)
        while self._first < len(self._times) and self._times[self._first] < keep_from:
            self._first += 1
        if self._first > 4096 and self._first * 2 > len(self._times):
            del self._times[: self._first], self._gangs[: self._first]
            self._first = 0
        if self._first == len(self._times):
            return ()
        earliest = self._times[0] if self._first_seen is None else self._first_seen
        starts = [now_s - self.window_s - j * self.step_s for j in range(self.recent)]
        for d in range(1, self.days + 1):
            for k in range(-self.offsets, self.offsets + 1):
                start = now_s - d * DAY_S + k * self.step_s
                if start + self.window_s <= now_s:
                    starts.append(start)
        out = []
        for start in starts:
            if start < earliest - self.step_s:
                continue  # before the history began: not a sample of anything
            if self._incomplete_until is not None and start <= self._incomplete_until:
                continue  # some of its arrivals are forgotten
            lo = bisect.bisect_left(self._times, start, self._first)
            hi = bisect.bisect_left(self._times, start + self.window_s, lo)
            out.append(tuple(self._gangs[lo:hi]))
        return tuple(out)
