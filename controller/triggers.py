"""Which watch events should wake the scaling loop early.

The loop is level-triggered (each pass reads the cluster afresh), so an event only has to
say "something relevant changed". The controller's own status writes must not wake it
again and again: each kind has a *fingerprint* of the fields that matter, and only a new
fingerprint (or a deletion) wakes the loop.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from controller.names import GPU_RESOURCE


def fingerprint(kind: str, body: Mapping[str, Any]) -> tuple[Any, ...]:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    deleting = bool(meta.get("deletionTimestamp"))
    if kind in ("DLJob", "NodePool", "DLService"):
        # Spec changes bump the generation; status writes (ours) do not.
        return (meta.get("generation"), deleting)
    if kind == "Pod":
        return (status.get("phase"), spec.get("nodeName"), deleting)
    if kind == "Node":
        ready = next(
            (c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"),
            None,
        )
        taints = tuple(sorted(str(t.get("key")) for t in spec.get("taints") or []))
        gpus = (status.get("allocatable") or {}).get(GPU_RESOURCE)
        return (ready, taints, gpus, bool(spec.get("unschedulable")), deleting)
    return (meta.get("resourceVersion"),)


class ChangeFilter:
    """Remembers each object's last fingerprint; thread-safe."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    def changed(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> bool:
        uid = str((body.get("metadata") or {}).get("uid", ""))
        key = f"{kind}/{uid}"
        with self._lock:
            if event_type == "DELETED":
                self._seen.pop(key, None)
                return True
            fp = fingerprint(kind, body)
            if self._seen.get(key) == fp:
                return False
            self._seen[key] = fp
            return True
