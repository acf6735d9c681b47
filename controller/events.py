"""Kubernetes Events for what the controller did and why (``kubectl describe`` shows them).

The same reason repeated every loop would bury the useful ones, so an Event with the same
object, reason and message is written once per ``repeat_after_s``. Events of cluster-scoped
objects (NodePools) go to the ``default`` namespace, as the kubelet does for Nodes.
Writing an Event is best effort: a failure is logged, never raised.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from controller.clock import format_time
from controller.kube import ApiError, Kube, core_path
from controller.names import COMPONENT

log = logging.getLogger("dlscaler.events")


class EventRecorder:
    def __init__(
        self,
        kube: Kube,
        *,
        identity: str,
        repeat_after_s: float = 600.0,
        clock: Callable[[], float] = time.time,
        max_remembered: int = 20_000,
    ) -> None:
        self.kube = kube
        self.identity = identity
        self.repeat_after_s = repeat_after_s
        self.clock = clock
        self.max_remembered = max_remembered
        self._recent: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def record(
        self, obj: Mapping[str, Any], type_: str, reason: str, message: str, *, kind: str = ""
    ) -> bool:
        """Write an Event about ``obj``; False when it was a recent repeat or failed."""
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        key = (uid, reason, message)
        now = self.clock()
        last = self._recent.get(key)
        if last is not None and now - last < self.repeat_after_s:
            return False
        self._recent[key] = now
        self._recent.move_to_end(key)
        while len(self._recent) > self.max_remembered:
            self._recent.popitem(last=False)
        namespace = meta.get("namespace") or "default"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name', 'object')[:200]}.{uuid.uuid4().hex[:16]}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", ""),
                "kind": kind or obj.get("kind", ""),
                "name": meta.get("name", ""),
                "namespace": meta.get("namespace", ""),
                "uid": uid,
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.identity[:128],
            "firstTimestamp": format_time(now),
            "lastTimestamp": format_time(now),
            "count": 1,
        }
        try:
            self.kube.create(core_path("events", namespace), event)
        except ApiError as err:
            log.warning("could not record Event %s on %s: %s", reason, meta.get("name"), err)
            return False
        return True
