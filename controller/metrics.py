"""Prometheus metrics, and the small HTTP server for ``/metrics``, ``/healthz``, ``/readyz``.

Each controller has its own registry (two controllers in one test process do not clash).
``/healthz`` fails when the loop (leader) or the election (standby) has not made progress
for a while, so a wedged process gets restarted; ``/readyz`` is ready once the first
snapshot was taken (leader) or the election is running (standby).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from dlscaler.pool import ProviderError

log = logging.getLogger("dlscaler.metrics")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.pending_gpus = Gauge(
            "dlscaler_pending_gpus", "GPUs asked for by queued gangs.", ["gpu_type"], registry=r
        )
        self.pending_gangs = Gauge("dlscaler_pending_gangs", "Queued gangs.", registry=r)
        self.running_gangs = Gauge("dlscaler_running_gangs", "Admitted gangs.", registry=r)
        self.pool_nodes = Gauge(
            "dlscaler_pool_nodes", "Nodes per pool by state.", ["pool", "state"], registry=r
        )
        self.pool_target = Gauge(
            "dlscaler_pool_target_nodes", "Target asked of the cloud.", ["pool"], registry=r
        )
        self.pool_available = Gauge(
            "dlscaler_pool_available", "1 unless the pool is backed off.", ["pool"], registry=r
        )
        self.forecast = Gauge(
            "dlscaler_forecast_gpus",
            "Forecast GPU demand over the next step, by quantile.",
            ["quantile"],
            registry=r,
        )
        self.demand = Gauge("dlscaler_demand_gpus", "GPUs running plus queued.", registry=r)
        self.decisions = Counter(
            "dlscaler_decisions_total", "Policy decisions.", ["policy", "fell_back"], registry=r
        )
        self.actions = Counter(
            "dlscaler_plan_actions_total",
            "Actions in plans, by kind (scale-up, remove, unschedulable, waiting) and pool.",
            ["kind", "pool"],
            registry=r,
        )
        self.provider_calls = Counter(
            "dlscaler_provider_calls_total",
            "Calls to node-pool providers.",
            ["pool", "operation"],
            registry=r,
        )
        self.provider_errors = Counter(
            "dlscaler_provider_errors_total",
            "Failed provider calls, by error kind.",
            ["pool", "operation", "kind"],
            registry=r,
        )
        self.provider_latency = Histogram(
            "dlscaler_provider_call_seconds",
            "Provider call latency.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reconcile_latency = Histogram(
            "dlscaler_reconcile_seconds",
            "One pass of the scaling loop.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decide_latency = Histogram(
            "dlscaler_decide_seconds", "decide() alone.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.reconcile_errors = Counter(
            "dlscaler_reconcile_errors_total", "Passes that raised.", registry=r
        )
        self.leader = Gauge("dlscaler_leader", "1 while this replica leads.", registry=r)
        self.jobs = Gauge("dlscaler_dljobs", "DLJobs by phase.", ["phase"], registry=r)
        self._lock = threading.Lock()
        self._pools_seen: set[str] = set()

    def provider_call(
        self, pool: str, operation: str, seconds: float, error: BaseException | None
    ) -> None:
        self.provider_calls.labels(pool, operation).inc()
        self.provider_latency.labels(operation).observe(seconds)
        if error is not None:
            kind = error.kind.value if isinstance(error, ProviderError) else "unexpected"
            self.provider_errors.labels(pool, operation, kind).inc()

    def forget_pools(self, current: set[str]) -> None:
        """Drop the series of deleted pools."""
        with self._lock:
            for pool in self._pools_seen - current:
                for state in ("ready", "in-flight", "draining"):
                    _remove(self.pool_nodes, pool, state)
                _remove(self.pool_target, pool)
                _remove(self.pool_available, pool)
            self._pools_seen = set(current)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


def _remove(metric: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


class Health:
    """Heartbeats the probes read."""

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.beat_s = time.monotonic()
        self.ready = False

    def beat(self) -> None:
        self.beat_s = time.monotonic()

    def healthy(self) -> bool:
        return time.monotonic() - self.beat_s < self.stale_after_s


class ProbeServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one port, in a daemon thread."""

    def __init__(self, metrics: Metrics, health: Health, host: str, port: int) -> None:
        render: Callable[[], bytes] = metrics.render

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, render(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = health.healthy()
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"stalled\n")
                elif path == "/readyz":
                    ok = health.ready and health.healthy()
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
                else:
                    self._reply(404, b"not found\n")

            def _reply(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                del format, args  # scrapes every few seconds would flood the log

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="probes")

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()
        log.info("serving /metrics, /healthz, /readyz on port %d", self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
