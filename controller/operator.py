"""The running controller: kopf's watches, leader election, the scaling loop and the probes.

All of it shares one asyncio loop; everything that blocks (Kubernetes and cloud calls, a
reconcile pass) runs in threads. Only the Lease holder runs passes; the watches run on
every replica so a standby starts warm.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
import time
from typing import Any

import kopf

from controller import handlers
from controller.cache import ObjectCache
from controller.events import EventRecorder
from controller.forecasting import Forecasting
from controller.kube import Kube
from controller.leader import LeaderElector
from controller.metrics import Health, Metrics, ProbeServer
from controller.pools import PoolManager, ProviderFactory
from controller.reconcile import Reconciler
from controller.settings import ControllerSettings
from controller.state import StateStore
from controller.triggers import ChangeFilter
from dlscaler.config import PoolModel
from dlscaler.pool import NodePoolProvider

log = logging.getLogger("dlscaler.operator")


def default_provider_factory(settings: ControllerSettings) -> ProviderFactory:
    def build(model: PoolModel) -> NodePoolProvider:
        from providers import build_provider

        if model.provider == "kwok":
            import pykube

            from controller.kube import load_config

            # The controller's own credentials, so a rotated ServiceAccount token (or a
            # kubeconfig's tokenFile) is followed by the provider's calls too.
            return build_provider(model, api=pykube.HTTPClient(load_config(settings.kubeconfig)))
        return build_provider(model)

    return build


def simple_selector(selector: str) -> dict[str, Any] | None:
    """``a=b,c=d`` as kopf's label filter (other selector forms: no filter, the loop's list
    applies the selector)."""
    if not selector:
        return None
    out: dict[str, Any] = {}
    for part in selector.split(","):
        key, sep, value = part.partition("=")
        if not sep or any(ch in part for ch in "!()"):
            return None
        out[key.strip()] = value.strip().lstrip("=")
    return out


class Operator:
    def __init__(
        self,
        settings: ControllerSettings,
        *,
        leader_elect: bool = True,
        provider_factory: ProviderFactory | None = None,
        forecaster: Any | None = None,
    ) -> None:
        self.settings = settings
        self.kube = Kube.connect(settings.kubeconfig)
        self.metrics = Metrics()
        self.health = Health(stale_after_s=max(60.0, 6 * settings.interval_s))
        self.probes = ProbeServer(
            self.metrics, self.health, settings.probe_host, settings.probe_port
        )
        events = EventRecorder(self.kube, identity=settings.identity)
        pools = PoolManager(
            provider_factory or default_provider_factory(settings),
            metrics=self.metrics,
            backoff_s=settings.backoff_s,
            short_backoff_s=max(settings.interval_s, 1.0),
            call_timeout_s=settings.call_timeout_s,
        )
        self.cache = ObjectCache()
        self.reconciler = Reconciler(
            self.kube,
            settings,
            metrics=self.metrics,
            events=events,
            pools=pools,
            forecasting=Forecasting(settings.policy, forecaster),
            store=StateStore(self.kube, settings.state_namespace, settings.state_configmap),
            cache=self.cache,
        )
        self.elector: LeaderElector | None = None
        if leader_elect:
            self.elector = LeaderElector(
                self.kube,
                namespace=settings.lease_namespace,
                name=settings.lease_name,
                identity=settings.identity,
                lease_duration_s=settings.lease_duration_s,
                renew_deadline_s=settings.renew_deadline_s,
                retry_period_s=settings.retry_period_s,
                on_change=self._leadership_changed,
            )
        self._wake = asyncio.Event()
        self._last_full_gc = -float("inf")  # the first right after the first pass
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stop_flag = asyncio.Event()

    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.is_leader.is_set()

    def wake(self, why: str = "") -> None:
        """Thread-safe: ask for a pass soon."""
        del why
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _leadership_changed(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        if leading:
            self.reconciler.history_loaded = False  # the last leader may have added to it
            self.wake("leader")

    # --- the loop ---------------------------------------------------------------------

    async def _scaling_loop(self) -> None:
        s = self.settings
        next_wake = 0.0
        last_start = -1e9
        while not self.stop_flag.is_set():
            timeout = max(0.0, next_wake - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            if self.stop_flag.is_set():
                break
            if not self.leading:
                self._wake.clear()
                next_wake = time.time() + s.interval_s
                self.health.ready = True  # a standby is ready to take over
                continue
            gap = max(s.debounce_s, last_start + s.min_pass_gap_s - time.monotonic())
            await asyncio.sleep(gap)  # let a burst of events arrive, then take one pass
            self._wake.clear()
            last_start = time.monotonic()
            try:
                result = await asyncio.to_thread(self.reconciler.run_once)
                next_wake = result.next_wake_s
            except Exception:
                self.metrics.reconcile_errors.inc()
                log.exception("reconcile pass failed; retrying")
                next_wake = time.time() + min(s.interval_s, 5.0)
            self.health.beat()
            self.health.ready = True
            self._collect_garbage()

    def _collect_garbage(self) -> None:
        """A full garbage collection between passes, then freeze what survived.

        The cached objects are hundreds of thousands of small dicts; a full (generation 2)
        collection walks them all and, left to itself, runs at random moments: measured at
        100-300 ms, inside ``decide()`` too, with 1,000 DLJobs. So automatic collections stop
        at generation 1 (``run`` raises the generation-2 threshold) and the full one happens
        here, between passes, every few minutes; freezing its survivors keeps the young
        collections small (cached objects hold no reference cycles; whatever else does is
        reclaimed at the next full collection).
        """
        now = time.monotonic()
        if now - self._last_full_gc < self.settings.full_gc_every_s:
            return
        self._last_full_gc = now
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    async def _elect(self) -> None:
        if self.elector is None:
            self.metrics.leader.set(1)
            await self.stop_flag.wait()  # always the leader, until told to stop
            return
        await self.elector.run(self.stop_flag, beat=self._standby_beat)

    def _standby_beat(self) -> None:
        if not self.leading:
            self.health.beat()

    # --- running ----------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, 1_000_000)  # full collections: _collect_garbage
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, self.stop_flag.set)
        self.probes.start()
        registry = kopf.OperatorRegistry()
        handlers.register(
            registry,
            config=self.kube.config,
            wake=self.wake,
            changes=ChangeFilter(),
            cache=self.cache,
            nodepool_selector=simple_selector(self.settings.nodepool_selector),
        )
        kopf_settings = kopf.OperatorSettings()
        kopf_settings.peering.standalone = True  # leadership is our Lease, not kopf's peering
        kopf_settings.posting.enabled = False  # Events are written by EventRecorder only
        kopf_settings.scanning.disabled = True  # resources are known; no CRD-watch rights needed
        namespaces = list(self.settings.namespaces)
        kopf_task = asyncio.create_task(
            kopf.operator(
                registry=registry,
                settings=kopf_settings,
                clusterwide=not namespaces,
                namespaces=namespaces,
                stop_flag=self.stop_flag,
                standalone=True,
            ),
            name="kopf",
        )
        tasks = [
            kopf_task,
            asyncio.create_task(self._elect(), name="leader-election"),
            asyncio.create_task(self._scaling_loop(), name="scaling-loop"),
        ]
        log.info(
            "dlscaler controller %s started (API server %s, policy %s)",
            self.settings.identity,
            self.kube.server,
            self.settings.policy.policy,
        )
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None and not self.stop_flag.is_set():
                    raise task.exception()  # type: ignore[misc]
        finally:
            self.stop_flag.set()
            self._wake.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        if self.leading:
            self.reconciler.save_history(force=True)
        if self.elector is not None:
            self.elector.release()
        self.reconciler.close()
        self.probes.stop()
        log.info("dlscaler controller %s stopped", self.settings.identity)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors index without parsing rules."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kopf logs every watch event at debug and its own housekeeping at info: keep it quiet.
    logging.getLogger("kopf").setLevel(max(logging.WARNING, root.level))


def run(settings: ControllerSettings, *, leader_elect: bool = True) -> None:
    asyncio.run(Operator(settings, leader_elect=leader_elect).run())
