"""The arrivals the controller has seen, for the predictive policy's arrival scenarios.

The simulator feeds ``predictors.arrivals.ArrivalWindows`` each gang as it is submitted; the
controller feeds the same windows from the cluster, so a tuned policy sees the same kind of
scenarios in both:

- **DLJobs.** Each DLJob is one arrival at its ``metadata.creationTimestamp``: the gang the
  policy sees (``JobView.gang``: workers x GPUs per worker, GPU type, priority, queue; an
  elastic job at its minimum), whatever its phase now.
- **DLService replicas.** A service's replicas at creation are arrivals at its
  ``creationTimestamp``; every later rise of its replica count adds one arrival per new
  replica at the pass that sees it. Each replica is a gang of one worker of the replica's
  GPUs. Scale-downs add nothing.

Every pass lists every object, so arrivals are keyed (a DLJob by its uid, a replica by its
service's uid and a number) and observed once. Objects whose GPUs are zero need no room and
are left out; so are arrivals older than the retention (eight days: the windows look back
seven days and some minutes).

**Across restarts.** Finished DLJobs are deleted (by their TTL, by people), so what a
restarted controller could re-list is not enough. The arrivals of the retention are kept in
the state ConfigMap (:mod:`controller.state`, key ``arrivals``) as columns: time (ms, as
deltas), workers, GPUs per worker, GPU type (an index into a table), deflated and
base64-encoded; plus each live DLService's replica count last counted (so a restart neither
misses nor repeats a scale-up, and does not count a service's creation again). A restored
arrival keeps its shape and time; its priority and queue are not kept (the scenarios place
workers by shape only). A DLJob re-listed after a restart is recognised by its creation time
and shape: each restored arrival stands for one such DLJob (two jobs of one shape created in
the same second are two arrivals, and two DLJobs to match), so nothing is counted twice and
the record needs no uids.

**The caps.** At most ``max_persisted`` (100,000) arrivals, and at most ``max_text_chars``
(700 KiB) of encoded text, so the ConfigMap (with the demand history beside it) stays below
~900 KiB of its 1 MiB: beyond either, the *oldest* arrivals are left out of the saved record,
which then says until when it is incomplete (``incompleteUntilMs``). The record also says
since when arrivals have been watched (``historySinceMs``), so after a restart the quiet days
before the oldest arrival still kept stay samples of quiet days. In memory at most
``max_in_memory`` (400,000, about 150 MB) are kept, the oldest forgotten first. Windows that
began at or before an arrival left out are not samples (``ArrivalWindows``
``mark_incomplete_until``), after a restart too, so a very busy cluster's scenarios draw on
fewer past days, never on days that look quieter than they were (a DLJob older than the
record, still listed after a restart, does not make them samples again).
"""

from __future__ import annotations

import array
import base64
import bisect
import json
import sys
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from controller.clock import parse_time
from controller.dljob import JobView
from controller.dlservice import SERVING_QUEUE, ServiceView
from dlscaler.config import PolicyConfig, PoolModel
from dlscaler.model import Gang
from dlscaler.policy.forecast_needs import arrival_window_s, lead_time_s
from predictors.arrivals import DAY_S, ArrivalWindows

FORMAT_VERSION = 1
RETENTION_S = 8 * DAY_S
"""How long arrivals are kept: the windows reach seven days (and their offsets) back."""
STEP_S = 300.0
"""The windows' step, as in the simulator's forecaster (``simulator.forecasting``)."""
MAX_PERSISTED = 100_000
MAX_IN_MEMORY = 400_000
MAX_TEXT_CHARS = 700 * 1024
COLUMNS = "timeDeltaMs:u32,workers:u16,gpusPerWorker:u16,gpuType:u16"
_MAX_U16 = 0xFFFF


Signature = tuple[int, int, int, str]
"""An arrival as the saved record keeps it: time (ms), workers, GPUs per worker, GPU type."""


def signature(gang: Gang) -> Signature:
    return (round(gang.submit_s * 1000), gang.workers, gang.gpus_per_worker, gang.gpu_type)


def window_s(config: PolicyConfig, pools: Sequence[PoolModel]) -> float:
    """The length of the arrival windows: the lead time, at least a minute (as the
    simulator's)."""
    return arrival_window_s(lead_time_s(config, pools))


@dataclass(frozen=True, slots=True)
class Arrival:
    time_s: float
    key: str
    """The arrival's key ('' for one restored from the ConfigMap)."""
    gang: Gang


class ArrivalLog:
    """The arrivals seen in the retention, in time order, and the windows built from them."""

    def __init__(
        self,
        *,
        step_s: float = STEP_S,
        retention_s: float = RETENTION_S,
        max_persisted: int = MAX_PERSISTED,
        max_text_chars: int = MAX_TEXT_CHARS,
        max_in_memory: int = MAX_IN_MEMORY,
    ) -> None:
        self.step_s = step_s
        self.retention_s = retention_s
        self.max_persisted = max_persisted
        self.max_text_chars = max_text_chars
        self.max_in_memory = max(1, max_in_memory)
        self._incomplete_until: float | None = None
        """Arrivals up to this time may be missing (forgotten, or left out of a record)."""
        self._since: float | None = None
        """The first arrival ever recorded (here or before a restart): windows after it are
        samples even once it is forgotten, so quiet days stay samples of quiet days."""
        self._times: list[float] = []
        self._arrivals: list[Arrival] = []
        self._keys: set[str] = set()
        self._unmatched: Counter[Signature] = Counter()
        """Restored arrivals no DLJob re-listed since has been recognised as."""
        self._replicas: dict[str, int] = {}
        """DLService uid -> the replica count last counted."""
        self._windows: ArrivalWindows | None = None

    def __len__(self) -> int:
        return len(self._arrivals)

    @property
    def arrivals(self) -> list[Arrival]:
        return list(self._arrivals)

    def seen(self, key: str) -> bool:
        return key in self._keys

    # --- observing -------------------------------------------------------------------------

    def observe_cluster(
        self, jobs: Sequence[JobView], services: Sequence[ServiceView], now_s: float
    ) -> int:
        """Record the arrivals in this pass's DLJobs and DLServices not recorded yet; the
        number added."""
        oldest = now_s - self.retention_s
        if self._incomplete_until is not None:
            # Windows before it are not samples, so older objects need no counting (and a
            # forgotten one must not come back every pass).
            oldest = max(oldest, self._incomplete_until + 0.001)
        new: list[tuple[str, Gang]] = []
        for job in jobs:
            if job.created_s < oldest or job.gpus_per_worker <= 0 or job.uid in self._keys:
                continue
            gang = job.gang()
            sig = signature(gang)
            if self._unmatched[sig] > 0:  # recorded before a restart
                self._unmatched[sig] -= 1
                self._claim(sig, job.uid)
                continue
            new.append((job.uid, gang))
        listed = set()
        for svc in services:
            listed.add(svc.uid)
            new += self._replica_arrivals(svc, now_s, oldest)
        for uid in [u for u in self._replicas if u not in listed]:
            del self._replicas[uid]  # deleted: its uid will not come back
        new.sort(key=lambda kg: kg[1].submit_s)  # stable: ties keep the listing's order
        added = sum(1 for key, gang in new if self.observe(gang, key))
        self.prune(now_s)
        self._forget_oldest(len(self._arrivals) - self.max_in_memory)
        return added

    def _replica_arrivals(
        self, svc: ServiceView, now_s: float, oldest: float
    ) -> list[tuple[str, Gang]]:
        if not svc.uid or svc.gpus_per_replica <= 0:
            return []
        wanted = svc.wanted
        last = self._replicas.get(svc.uid)
        self._replicas[svc.uid] = wanted
        created_s = _created_s(svc.obj)
        if last is None:
            # First sight (a service recorded before a restart is in the restored map):
            # its creation, unless older than the retention.
            if created_s is None or created_s < oldest:
                return []
            return [(f"{svc.uid}#{i}", _replica(svc, i, created_s)) for i in range(wanted)]
        stamp = round(now_s * 1000)
        return [(f"{svc.uid}@{stamp}#{i}", _replica(svc, i, now_s)) for i in range(last, wanted)]

    def observe(self, gang: Gang, key: str) -> bool:
        """Record ``gang`` as arriving at its ``submit_s`` (False: ``key`` was recorded)."""
        if self.seen(key):
            return False
        self._add(Arrival(gang.submit_s, key, gang))
        return True

    def _claim(self, sig: Signature, key: str) -> None:
        """Give a restored arrival of this signature the key of the DLJob recognised as it,
        so the key is forgotten with the arrival when the retention passes."""
        self._keys.add(key)
        at = bisect.bisect_left(self._times, sig[0] / 1000 - 0.001)
        while at < len(self._arrivals) and self._times[at] <= sig[0] / 1000 + 0.001:
            old = self._arrivals[at]
            if not old.key and signature(old.gang) == sig:
                self._arrivals[at] = Arrival(old.time_s, key, old.gang)
                return
            at += 1

    def _forget_oldest(self, count: int) -> None:
        """Drop the ``count`` oldest arrivals from memory; windows that began at or before
        them are then incomplete."""
        if count <= 0:
            return
        for old in self._arrivals[:count]:
            self._keys.discard(old.key)
            if not old.key and self._unmatched[signature(old.gang)] > 0:
                self._unmatched[signature(old.gang)] -= 1  # no DLJob can be matched to it now
        self._mark_incomplete_until(self._times[count - 1])
        del self._times[:count], self._arrivals[:count]
        self._windows = None  # they hold the forgotten gangs too

    def _mark_history_since(self, time_s: float) -> None:
        if self._since is None or time_s < self._since:
            self._since = time_s
        if self._windows is not None:
            self._windows.mark_history_since(time_s)

    def _mark_incomplete_until(self, time_s: float) -> None:
        if self._incomplete_until is None or time_s > self._incomplete_until:
            self._incomplete_until = time_s
        if self._windows is not None:
            self._windows.mark_incomplete_until(time_s)

    def _add(self, arrival: Arrival) -> None:
        self._mark_history_since(arrival.time_s)
        if arrival.key:
            self._keys.add(arrival.key)
        if not self._times or arrival.time_s >= self._times[-1]:
            self._times.append(arrival.time_s)
            self._arrivals.append(arrival)
            if self._windows is not None:
                self._windows.observe(arrival.gang)
            return
        # Out of order (a watch that lagged, a restore): the windows are rebuilt when next
        # asked, since they take gangs in time order only.
        at = bisect.bisect_right(self._times, arrival.time_s)
        self._times.insert(at, arrival.time_s)
        self._arrivals.insert(at, arrival)
        self._windows = None

    def prune(self, now_s: float) -> None:
        """Forget arrivals older than the retention."""
        cut = bisect.bisect_left(self._times, now_s - self.retention_s)
        if not cut:
            return
        for old in self._arrivals[:cut]:
            self._keys.discard(old.key)
        del self._times[:cut], self._arrivals[:cut]

    # --- scenarios -------------------------------------------------------------------------

    def scenarios(self, now_s: float, window_s: float) -> tuple[tuple[Gang, ...], ...]:
        """The gangs that arrived in past windows of ``window_s`` (``ArrivalWindows``)."""
        if self._windows is None or self._windows.window_s != window_s:
            self._windows = ArrivalWindows(window_s, step_s=self.step_s)
            for arrival in self._arrivals:
                self._windows.observe(arrival.gang)
            if self._incomplete_until is not None:
                self._windows.mark_incomplete_until(self._incomplete_until)
            if self._since is not None:
                self._windows.mark_history_since(self._since)
        return self._windows.scenarios(now_s)

    # --- persistence -----------------------------------------------------------------------

    def encode(self, now_s: float) -> str:
        """The record for the state ConfigMap: the latest arrivals of the retention within
        the caps (the oldest are left out beyond them)."""
        self.prune(now_s)
        kept = self._arrivals[-self.max_persisted :] if self.max_persisted else []
        while True:
            left_out = len(self._arrivals) - len(kept)
            until = self._times[left_out - 1] if left_out else None
            if self._incomplete_until is not None:
                until = (
                    self._incomplete_until if until is None else max(until, self._incomplete_until)
                )
            text = encode(
                kept, self._replicas, incomplete_until_s=until, history_since_s=self._since
            )
            if len(text) <= self.max_text_chars or not kept:
                return text
            # Drop the oldest in proportion to the excess (and a little more), then retry.
            share = 1.0 - 0.95 * self.max_text_chars / len(text)
            kept = kept[max(1, int(len(kept) * share)) :]

    def restore(self, text: str, now_s: float) -> int:
        """Add the arrivals of a saved record (those already seen are skipped); the number
        added. Raises ValueError for a record this version cannot read."""
        arrivals, replicas, incomplete_until, history_since = decode_record(text)
        oldest = now_s - self.retention_s
        if incomplete_until is not None:
            self._mark_incomplete_until(incomplete_until)
        if history_since is None and arrivals:
            history_since = arrivals[0].time_s  # a record from before this key
        if history_since is not None:
            self._mark_history_since(history_since)
        # Already here: arrivals seen this run (before a read that failed, or by a previous
        # leadership) and restored ones; each stands for one saved arrival of its signature.
        present = Counter(signature(a.gang) for a in self._arrivals)
        self._unmatched = Counter(
            {sig: n for sig, n in self._unmatched.items() if sig[0] >= oldest * 1000}
        )
        added = 0
        for arrival in arrivals:
            sig = signature(arrival.gang)
            if arrival.time_s < oldest:
                continue
            if present[sig] > 0:
                present[sig] -= 1
                continue
            self._add(arrival)
            self._unmatched[sig] += 1
            added += 1
        for uid, count in replicas.items():
            self._replicas.setdefault(uid, count)
        self._forget_oldest(len(self._arrivals) - self.max_in_memory)
        return added


def _created_s(obj: Mapping[str, Any]) -> float | None:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp"))


def _replica(svc: ServiceView, index: int, time_s: float) -> Gang:
    return Gang(
        job_id=f"{svc.key}#{index}",
        submit_s=time_s,
        workers=1,
        gpus_per_worker=svc.gpus_per_replica,
        gpu_type=svc.gpu_type,
        queue=SERVING_QUEUE,
    )


# --- encoding ------------------------------------------------------------------------------


def _packed(values: Iterable[int], typecode: str) -> bytes:
    column = array.array(typecode, values)
    if sys.byteorder != "little":
        column.byteswap()
    return column.tobytes()


def encode(
    arrivals: Sequence[Arrival],
    replicas: Mapping[str, int],
    *,
    incomplete_until_s: float | None = None,
    history_since_s: float | None = None,
) -> str:
    """Columns of little-endian integers (``COLUMNS``), concatenated, deflated, base64;
    ``incomplete_until_s``: arrivals up to then may be missing from the record;
    ``history_since_s``: since when arrivals have been watched."""
    ms = [round(a.time_s * 1000) for a in arrivals]
    types: dict[str, int] = {}
    for a in arrivals:
        types.setdefault(a.gang.gpu_type, len(types))
    raw = b"".join(
        (
            _packed((t - p for t, p in zip(ms, ms[:1] + ms, strict=False)), "I"),
            _packed((min(a.gang.workers, _MAX_U16) for a in arrivals), "H"),
            _packed((min(a.gang.gpus_per_worker, _MAX_U16) for a in arrivals), "H"),
            _packed((types[a.gang.gpu_type] for a in arrivals), "H"),
        )
    )
    doc = {
        "version": FORMAT_VERSION,
        "count": len(arrivals),
        "baseMs": ms[0] if ms else 0,
        "gpuTypes": list(types),
        "columns": COLUMNS,
        "columnsDeflateBase64": base64.b64encode(zlib.compress(raw, 6)).decode("ascii"),
        "serviceReplicas": dict(sorted(replicas.items())),
    }
    if incomplete_until_s is not None:
        doc["incompleteUntilMs"] = round(incomplete_until_s * 1000)
    if history_since_s is not None:
        doc["historySinceMs"] = round(history_since_s * 1000)
    return json.dumps(doc, separators=(",", ":"))


def decode(text: str) -> tuple[list[Arrival], dict[str, int]]:
    """The arrivals and service replica counts of a record :func:`encode` wrote."""
    record = decode_record(text)
    return record.arrivals, record.replicas


class Record(NamedTuple):
    arrivals: list[Arrival]
    replicas: dict[str, int]
    incomplete_until_s: float | None
    """Arrivals up to this time may be missing (``None``: the record is whole)."""
    history_since_s: float | None
    """Since when arrivals have been watched (``None``: not said; the first arrival)."""


def decode_record(text: str) -> Record:
    """Everything a record :func:`encode` wrote."""
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            version = doc.get("version") if isinstance(doc, dict) else None
            raise ValueError(f"arrivals format {version!r} is not supported")
        n = int(doc["count"])
        raw = zlib.decompress(base64.b64decode(doc["columnsDeflateBase64"]))
        types = [str(t) for t in doc["gpuTypes"]]
        columns = []
        offset = 0
        for typecode in ("I", "H", "H", "H"):
            column = array.array(typecode)
            size = column.itemsize * n
            column.frombytes(raw[offset : offset + size])
            if len(column) != n:
                raise ValueError(f"arrivals record is cut short: {len(column)} of {n} values")
            if sys.byteorder != "little":
                column.byteswap()
            columns.append(column)
            offset += size
        deltas, workers, gpus, type_index = columns
        replicas = {str(k): int(v) for k, v in (doc.get("serviceReplicas") or {}).items()}
        ms = int(doc["baseMs"])
        out = []
        for i in range(n):
            ms += deltas[i]
            gang = Gang(
                job_id=f"arrival@{ms}",
                submit_s=ms / 1000,
                workers=max(1, workers[i]),
                gpus_per_worker=gpus[i],
                gpu_type=types[type_index[i]],
            )
            out.append(Arrival(gang.submit_s, "", gang))
        until_ms = doc.get("incompleteUntilMs")
        incomplete_until = None if until_ms is None else int(until_ms) / 1000
        since_ms = doc.get("historySinceMs")
        history_since = None if since_ms is None else int(since_ms) / 1000
    except (KeyError, TypeError, IndexError, zlib.error, json.JSONDecodeError) as err:
        raise ValueError(f"unreadable arrivals record: {err!r}") from err
    return Record(out, replicas, incomplete_until, history_since)
