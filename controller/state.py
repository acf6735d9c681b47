"""The demand history the forecaster learns from, kept in the cluster across restarts.

Where: one ConfigMap (``dlscaler-state`` in the controller's namespace, key ``demand``).
Why a ConfigMap: it is the smallest object every cluster has that survives the controller's
pods, needs no CRD or volume, is readable with ``kubectl get cm -o yaml`` when debugging,
and RBAC can grant exactly this one name. Why this encoding: a series of GPU demand at a
fixed step is compact as a start time, a step and little-endian float32 values, deflated
and base64-encoded — two weeks at one-minute steps (20,160 points) is ~80 KiB raw and far
less deflated, well under a ConfigMap's 1 MiB.

Each step keeps the *peak* demand seen in it (provisioning must cover peaks). A gap while
no controller ran is filled with the last value before it (the best guess; the forecaster
sees a flat stretch, not a drop to zero).

A second key, ``arrivals``, keeps the gangs that arrived in the last eight days, for the
predictive policy's arrival scenarios (:mod:`controller.arrivals` encodes it and caps it at
700 KiB, so both keys stay below ~900 KiB). Each key is written with its own merge patch
field: a controller that has no arrivals to keep (another policy) leaves the key alone.

What the controller needs to not repeat a scale-up after a restart is not here: it is the
provider's own target (asked of the cloud on every pass) and the NodePool status.
"""

from __future__ import annotations

import array
import base64
import json
import logging
import math
import sys
import zlib
from dataclasses import dataclass, field

from controller.configmap_store import ConfigMapBacked
from controller.kube import Kube

log = logging.getLogger("dlscaler.state")

CONFIGMAP = "dlscaler-state"
KEY = "demand"
ARRIVALS_KEY = "arrivals"
FORMAT_VERSION = 1


@dataclass(slots=True)
class DemandHistory:
    step_s: float = 60.0
    max_points: int = 20_160
    start_s: float | None = None
    """Start of the step of ``values[0]``."""
    values: list[float] = field(default_factory=list)

    @property
    def end_s(self) -> float | None:
        """End of the last step recorded."""
        if self.start_s is None:
            return None
        return self.start_s + len(self.values) * self.step_s

    def observe(self, now_s: float, demand_gpus: float) -> None:
        """Record demand at ``now_s`` into its step (keeping the step's peak)."""
        if self.start_s is None:
            self.start_s = math.floor(now_s / self.step_s) * self.step_s
        index = math.floor((now_s - self.start_s) / self.step_s)
        if index < 0:
            return  # a clock step backwards: that step is already written
        if index < len(self.values):
            self.values[index] = max(self.values[index], demand_gpus)
            return
        fill = self.values[-1] if self.values else demand_gpus
        gap = index - len(self.values)
        self.values.extend([fill] * min(gap, self.max_points))
        if gap > self.max_points:  # away longer than the whole window: start afresh
            self.start_s += (gap - self.max_points) * self.step_s
        self.values.append(demand_gpus)
        excess = len(self.values) - self.max_points
        if excess > 0:
            del self.values[:excess]
            self.start_s += excess * self.step_s

    def series(self) -> tuple[float, float, list[float]]:
        """``(start_s, step_s, values)``: the history for a forecaster."""
        return (self.start_s or 0.0, self.step_s, list(self.values))

    # --- encoding -------------------------------------------------------------------------

    def encode(self) -> str:
        values = array.array("f", self.values)
        if sys.byteorder != "little":
            values.byteswap()
        packed = base64.b64encode(zlib.compress(values.tobytes(), 9)).decode("ascii")
        doc = {
            "version": FORMAT_VERSION,
            "stepSeconds": self.step_s,
            "startSeconds": self.start_s,
            "points": len(self.values),
            "gpusFloat32DeflateBase64": packed,
        }
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str, *, step_s: float = 60.0, max_points: int = 20_160) -> DemandHistory:
        """The history in ``text``; resampled (by peak) if it was kept at another step."""
        doc = json.loads(text)
        if doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"demand history format {doc.get('version')!r} is not supported")
        values = array.array("f")
        values.frombytes(zlib.decompress(base64.b64decode(doc["gpusFloat32DeflateBase64"])))
        if sys.byteorder != "little":
            values.byteswap()
        stored = cls(
            step_s=float(doc["stepSeconds"]),
            start_s=doc.get("startSeconds"),
            values=[float(v) for v in values],
            max_points=max_points,
        )
        if stored.step_s == step_s or stored.start_s is None:
            stored.step_s = step_s if stored.start_s is None else stored.step_s
            stored.max_points = max_points
            return stored
        out = cls(step_s=step_s, max_points=max_points)
        for i, v in enumerate(stored.values):
            out.observe(stored.start_s + i * stored.step_s, v)
        return out


class StateStore(ConfigMapBacked):
    """Reads and writes the history ConfigMap (leader only)."""

    def __init__(self, kube: Kube, namespace: str, name: str = CONFIGMAP) -> None:
        super().__init__(kube, namespace, name)
        self.arrivals_text = ""
        """The ``arrivals`` key as the last :meth:`load` found it ('' when absent)."""

    def load(self, *, step_s: float, max_points: int) -> DemandHistory:
        """The demand history (the ``arrivals`` key is left in :attr:`arrivals_text`)."""
        data = self.configmap.load()
        self.arrivals_text = data.get(ARRIVALS_KEY, "")
        text = data.get(KEY)
        if not text:
            return DemandHistory(step_s=step_s, max_points=max_points)
        try:
            return DemandHistory.decode(text, step_s=step_s, max_points=max_points)
        except (ValueError, KeyError, zlib.error) as err:
            log.warning(
                "ignoring unreadable demand history in ConfigMap %s/%s: %s",
                self.namespace,
                self.name,
                err,
            )
            return DemandHistory(step_s=step_s, max_points=max_points)

    def save(self, history: DemandHistory, *, arrivals: str | None = None) -> None:
        """Write the history (and ``arrivals``, the encoded arrivals, when given), each key
        in the same merge patch; a write by someone else since the last read or write is a
        409 (:class:`controller.configmap_store.ConfigMapStore`)."""
        data = {KEY: history.encode()}
        if arrivals is not None:
            data[ARRIVALS_KEY] = arrivals
        self.configmap.save(data)
