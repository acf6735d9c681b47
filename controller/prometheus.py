"""Reading one number from Prometheus (``/api/v1/query``) for a DLService's target.

The query's result is summed when it is a vector (``rate(requests_total[1m])`` per pod gives
one sample per replica: the service's load is their sum); a scalar is taken as it is. No
answer, an error or an empty result is ``None``: the service keeps its replica count rather
than being scaled on a guess.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

log = logging.getLogger("dlscaler.prometheus")


class Prometheus:
    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str) -> float | None:
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(address, timeout=self.timeout_s) as resp:
                doc = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as err:
            log.warning("Prometheus query %r failed: %s", promql, err)
            return None
        if doc.get("status") != "success":
            log.warning("Prometheus query %r: %s", promql, doc.get("error", doc.get("status")))
            return None
        data = doc.get("data") or {}
        kind = data.get("resultType")
        result: Any = data.get("result")
        try:
            if kind == "scalar":
                value = float(result[1])
            elif kind == "vector":
                if not result:
                    return None
                value = sum(float(sample["value"][1]) for sample in result)
            else:
                return None
        except (TypeError, ValueError, IndexError, KeyError):
            return None
        return value if math.isfinite(value) else None
