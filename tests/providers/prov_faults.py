"""A fault-injecting layer on the loopback path, in front of any cloud fake (or moto).

Faults are drawn per request at configurable rates (seeded: a run repeats exactly) or
scripted for the next matching requests. Each cloud renders refusals in its own wire format
(:class:`Renderer`), so what reaches the adapter is what the real cloud would send:

- ``throttle``, ``server_error``, ``permission``: refused before the cloud acts.
- ``timeout``: the connection is held, then closed without an answer.
- ``lost_response``: the cloud acts, then the client gets a 5xx instead of the answer.
- ``stockout``, ``quota``, ``partial_delete``: acted out by the cloud fake itself (it knows
  what a failed launch or a half-done delete looks like there).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from prov_loopback import DROP, App, Call, Request, Response

from providers.fake import FaultRates

Renderer = Callable[[str, Call, Request], Response]
"""``(fault, call, request) -> response`` for throttle, server_error and permission."""

_APP_FAULTS = ("stockout", "quota", "partial_delete")
_TARGET_KINDS = {"read": {"read"}, "scale": {"scale"}, "delete": {"delete"}, "poll": {"poll"}}


@dataclass
class _Scripted:
    fault: str
    target: str
    times: int


class FaultInjector:
    """An :class:`App` that passes requests to ``app``, failing some on the way."""

    def __init__(
        self,
        app: App,
        render: Renderer,
        *,
        rates: FaultRates | None = None,
        seed: int = 0,
        hold_s: float = 0.0,
    ) -> None:
        self.app = app
        self.render = render
        self.rates = rates or FaultRates()
        self.hold_s = hold_s
        self.requests: Counter[str] = Counter()
        """Requests seen, by call kind (read, scale, delete, poll, other)."""
        self.faults: Counter[str] = Counter()
        """Faults injected, by name."""
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._scripted: list[_Scripted] = []

    def inject(self, fault: str, target: str = "any", *, times: int = 1) -> None:
        with self._lock:
            self._scripted.append(_Scripted(fault, target, times))

    def clear(self) -> None:
        with self._lock:
            self._scripted.clear()

    def set_rates(self, rates: FaultRates, *, seed: int = 0) -> None:
        with self._lock:
            self.rates = rates
            self._rng = random.Random(seed)

    def classify(self, request: Request) -> Call:
        return self.app.classify(request)

    def _pick(self, call: Call) -> str:
        with self._lock:
            self.requests[call.kind] += 1
            for s in self._scripted:
                if s.times > 0 and self._applies(s.fault, s.target, call):
                    s.times -= 1
                    self.faults[s.fault] += 1
                    return s.fault
            r = self.rates
            mutation = call.kind in ("scale", "delete")
            for fault, rate in (
                ("throttle", r.throttle),
                ("server_error", r.server_error),
                ("timeout", r.timeout),
                ("lost_response", r.lost_response if mutation else 0.0),
                ("stockout", r.stockout if call.kind == "scale" else 0.0),
                ("partial_delete", r.partial_delete if call.instances > 1 else 0.0),
            ):
                if rate and self._rng.random() < rate:
                    self.faults[fault] += 1
                    return fault
            return ""

    @staticmethod
    def _applies(fault: str, target: str, call: Call) -> bool:
        if target != "any" and call.kind not in _TARGET_KINDS[target]:
            return False
        if fault in ("stockout", "quota"):
            return call.kind == "scale"
        if fault == "partial_delete":
            return call.kind == "delete" and call.instances > 1
        if fault == "lost_response":
            return call.kind in ("scale", "delete")
        return True

    def handle(self, request: Request) -> Response:
        call = self.app.classify(request)
        fault = self._pick(call)
        if fault in ("throttle", "server_error", "permission"):
            return self.render(fault, call, request)
        if fault == "timeout":
            time.sleep(self.hold_s)
            return DROP
        if fault in _APP_FAULTS:
            request.fault = fault
        response = self.app.handle(request)
        if fault == "lost_response" and response.status < 400:
            return self.render("server_error", call, request)
        return response
