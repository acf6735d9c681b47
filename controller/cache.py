"""The latest version of the watched objects, fed by kopf's watch events (an informer).

Listing thousands of DLJobs and Nodes on every pass costs more than the pass itself; the
watches every replica runs anyway keep this cache current instead. The loop lists a kind
once to fill it (and again every ``resync_s``, to heal anything a watch missed), and
writes its own changes in as the API server returns them, so a pass sees its previous
pass's writes even before their watch events arrive.

Versions are ordered by ``metadata.resourceVersion`` (etcd revisions: integers in every
API server in use), so a late event never replaces a newer object; a deleted object is
remembered for a while, so a list taken just before its deletion does not bring it back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Obj = dict[str, Any]
TOMBSTONE_S = 600.0


def _version(obj: Mapping[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class ObjectCache:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, Obj]] = {}
        self._synced_at: dict[str, float] = {}
        self._deleted: dict[str, tuple[int, float]] = {}
        self.clock = clock

    def synced(self, kind: str, max_age_s: float) -> bool:
        at = self._synced_at.get(kind)
        return at is not None and self.clock() - at < max_age_s

    def observe(self, kind: str, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """A watch event (``ADDED``, ``MODIFIED``, ``DELETED``; ``None`` from a listing)."""
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        if not uid:
            return
        with self._lock:
            objects = self._objects.setdefault(kind, {})
            if event_type == "DELETED":
                objects.pop(uid, None)
                self._deleted[uid] = (_version(obj), self.clock())
                return
            self._put(objects, uid, dict(obj))

    def upsert(self, kind: str, obj: Mapping[str, Any]) -> None:
        """An object as the API server returned it after our own write."""
        self.observe(kind, "MODIFIED", obj)

    def replace(self, kind: str, listed: Iterable[Obj]) -> None:
        """A full listing: the truth, except for what changed since it was taken."""
        with self._lock:
            now = self.clock()
            self._deleted = {u: d for u, d in self._deleted.items() if now - d[1] < TOMBSTONE_S}
            old = self._objects.get(kind, {})
            fresh: dict[str, Obj] = {}
            for obj in listed:
                uid = str(obj["metadata"].get("uid") or "")
                self._put(fresh, uid, obj)
            for uid, obj in old.items():
                # Newer than the listing: arrived by watch while the list was on its way.
                if uid in fresh and _version(obj) > _version(fresh[uid]):
                    fresh[uid] = obj
            self._objects[kind] = fresh
            self._synced_at[kind] = now

    def _put(self, objects: dict[str, Obj], uid: str, obj: Obj) -> None:
        gone = self._deleted.get(uid)
        if gone is not None and _version(obj) <= gone[0]:
            return
        current = objects.get(uid)
        if current is None or _version(obj) >= _version(current):
            objects[uid] = obj

    def items(self, kind: str) -> list[Obj]:
        with self._lock:
            return list(self._objects.get(kind, {}).values())
