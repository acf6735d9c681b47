"""The NodePools' providers, and every call to them: in threads, one pool never blocking another.

Each NodePool gets a provider (``providers.build_provider``), rebuilt when its spec changes.
Provider calls are blocking and can be slow or hang (a cloud API timing out); they run on a
thread pool and the reconciler waits for them only up to a bound. A pool with a call still
running is *busy*: it is described from its last answer plus the target being asked for,
and is not asked to grow again until the call returns — so a hung cloud call delays that
pool only.

Errors decide a pool's backoff (``PoolState.unavailable_until_s``: the policy then grows
the next fitting pool): capacity, quota, permission, invalid configuration and not-found
back it off for ``backoff_s``; throttling and transient errors (already retried by the
adapter) for one loop interval.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any, TypeVar

from controller.clock import parse_time
from controller.metrics import Metrics
from controller.snapshot import PoolInput
from dlscaler.config import ConfigError, PoolModel, parse_pools
from dlscaler.pool import ErrorKind, GroupDescription, NodePoolProvider, ProviderError

log = logging.getLogger("dlscaler.pools")

T = TypeVar("T")
ProviderFactory = Callable[[PoolModel], NodePoolProvider]

BACKED_OFF_KINDS = (
    ErrorKind.CAPACITY,
    ErrorKind.QUOTA,
    ErrorKind.PERMISSION,
    ErrorKind.INVALID_CONFIG,
    ErrorKind.NOT_FOUND,
)


def nodepool_model(obj: Mapping[str, Any]) -> PoolModel:
    """A NodePool object -> the validated pool model (errors name the pool and field)."""
    name = (obj.get("metadata") or {}).get("name", "?")
    manifest = {"kind": "NodePool", "metadata": {"name": name}, "spec": obj.get("spec") or {}}
    return parse_pools([manifest], source=f"NodePool {name}")[0]


@dataclass(slots=True)
class PoolRuntime:
    name: str
    obj: Mapping[str, Any]
    model: PoolModel | None = None
    spec_key: str = ""
    provider: NodePoolProvider | None = None
    config_error: str = ""
    description: GroupDescription | None = None
    described_s: float | None = None
    unavailable_until_s: float | None = None
    backoff_reason: str = ""
    last_error: str = ""
    last_scale_s: float | None = None
    busy: Future[Any] | None = None
    asked_target: int | None = None
    """The target of a scale-up still in progress (busy pools only)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def is_busy(self) -> bool:
        return self.busy is not None and not self.busy.done()

    def available(self, now_s: float) -> bool:
        return self.unavailable_until_s is None or now_s >= self.unavailable_until_s


class PoolManager:
    def __init__(
        self,
        factory: ProviderFactory,
        *,
        metrics: Metrics,
        backoff_s: float = 300.0,
        short_backoff_s: float = 10.0,
        call_timeout_s: float = 20.0,
        max_threads: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.factory = factory
        self.metrics = metrics
        self.backoff_s = backoff_s
        self.short_backoff_s = short_backoff_s
        self.call_timeout_s = call_timeout_s
        self.clock = clock
        self.pools: dict[str, PoolRuntime] = {}
        self.executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="pool")

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    # --- the NodePool objects ---------------------------------------------------------

    def sync(self, objects: Sequence[Mapping[str, Any]], now_s: float) -> None:
        """Track these NodePools (new, changed, deleted); rebuild changed providers."""
        seen = set()
        for obj in objects:
            name = obj["metadata"]["name"]
            seen.add(name)
            key = json.dumps(obj.get("spec") or {}, sort_keys=True)
            rt = self.pools.get(name)
            if rt is None:
                rt = PoolRuntime(name=name, obj=obj)
                _restore(rt, obj, now_s, self.backoff_s)
                self.pools[name] = rt
            rt.obj = obj
            if key != rt.spec_key:
                self._configure(rt, key, now_s)
        for gone in set(self.pools) - seen:
            del self.pools[gone]

    def _configure(self, rt: PoolRuntime, key: str, now_s: float) -> None:
        rt.spec_key = key
        rt.provider = None
        rt.description = None
        rt.config_error = ""
        if rt.backoff_reason.startswith(("invalid-config", "permission", "not-found")):
            rt.unavailable_until_s = None  # the spec changed: try the fixed configuration
        try:
            rt.model = nodepool_model(rt.obj)
            rt.provider = self.factory(rt.model)
        except (ConfigError, ProviderError, TypeError, ValueError) as err:
            rt.config_error = str(err)
            rt.last_error = f"invalid-config: {err}"
            rt.unavailable_until_s = now_s + self.backoff_s
            rt.backoff_reason = rt.last_error
            log.warning("NodePool %s: %s", rt.name, err)

    def valid(self) -> list[PoolRuntime]:
        return [rt for rt in self.pools.values() if rt.model is not None]

    # --- describing -------------------------------------------------------------------

    def describe_all(self, now_s: float) -> None:
        """Ask every idle pool's provider for its group, in parallel, bounded in time."""
        self.finish_describe(self.start_describe(), now_s)

    def start_describe(self) -> dict[Future[GroupDescription], PoolRuntime]:
        """Start asking every idle pool's provider for its group (in threads)."""
        futures: dict[Future[GroupDescription], PoolRuntime] = {}
        for rt in self.valid():
            if rt.provider is None or rt.is_busy:
                continue
            provider = rt.provider
            fut = self.executor.submit(self._call, rt, "describe", provider.describe)
            rt.busy = fut
            futures[fut] = rt
        return futures

    def finish_describe(
        self, futures: Mapping[Future[GroupDescription], PoolRuntime], now_s: float
    ) -> None:
        """Wait (bounded) for the answers; a pool still describing keeps its last answer."""
        done, _ = wait_futures(list(futures), timeout=self.call_timeout_s)
        for fut, rt in futures.items():
            if fut not in done:
                log.warning(
                    "NodePool %s: describe still running after %.0f s", rt.name, self.call_timeout_s
                )
                continue
            err = fut.exception()
            if err is None:
                rt.description = fut.result()
                rt.described_s = now_s
            else:
                rt.description = None
                self._note_error(rt, err, now_s)

    def inputs(self, now_s: float) -> list[PoolInput]:
        out = []
        for rt in self.valid():
            assert rt.model is not None
            desc = rt.description
            until = rt.unavailable_until_s
            if rt.is_busy:
                # Count what is being asked for, and do not ask again until it returns.
                if desc is not None and rt.asked_target is not None:
                    desc = dataclasses.replace(
                        desc, target_size=max(desc.target_size, rt.asked_target)
                    )
                until = max(until or 0.0, now_s + 1e-3)
            elif rt.config_error or desc is None:
                until = max(until or 0.0, now_s + 1e-3)
            out.append(
                PoolInput(
                    model=rt.model,
                    description=desc,
                    unavailable_until_s=until if until and until > now_s else None,
                    last_scale_s=rt.last_scale_s,
                )
            )
        return out

    # --- acting -----------------------------------------------------------------------

    def submit(
        self,
        name: str,
        operation: str,
        fn: Callable[[NodePoolProvider], Any],
        *,
        asked_target: int | None = None,
    ) -> Future[Any] | None:
        """Run ``fn(provider)`` for pool ``name`` unless a call of that pool is still running."""
        rt = self.pools.get(name)
        if rt is None or rt.provider is None or rt.is_busy:
            return None
        provider = rt.provider
        rt.asked_target = asked_target
        fut = self.executor.submit(self._call, rt, operation, lambda: fn(provider))
        rt.busy = fut
        return fut

    def settle(self, futures: Sequence[Future[Any]], now_s: float) -> None:
        """Wait (bounded) for calls made this pass and record their outcome."""
        done, _ = wait_futures([f for f in futures if f is not None], timeout=self.call_timeout_s)
        del done

    def _call(self, rt: PoolRuntime, operation: str, fn: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            result = fn()
        except BaseException as err:
            self.metrics.provider_call(rt.name, operation, time.perf_counter() - started, err)
            if operation != "describe":
                self._note_error(rt, err, self.clock())
            raise
        self.metrics.provider_call(rt.name, operation, time.perf_counter() - started, None)
        if operation == "scale-up":
            # A granted scale-up is the proof the pool works again; giving nodes back
            # (repair, scale-down) is not.
            with rt.lock:
                rt.last_error = ""
                rt.last_scale_s = self.clock()
        return result

    def _note_error(self, rt: PoolRuntime, err: BaseException, now_s: float) -> None:
        with rt.lock:
            if isinstance(err, ProviderError):
                text = str(err)
                delay = self.backoff_s if err.kind in BACKED_OFF_KINDS else self.short_backoff_s
                if err.retry_after_s:
                    delay = max(delay, err.retry_after_s)
            else:
                text = f"transient: {type(err).__name__}: {err}"
                delay = self.short_backoff_s
            rt.last_error = text
            rt.backoff_reason = text
            until = now_s + delay
            rt.unavailable_until_s = max(rt.unavailable_until_s or 0.0, until)
        log.warning("NodePool %s: %s (backed off for %.0f s)", rt.name, text, delay)

    def back_off(self, name: str, reason: str, now_s: float) -> float | None:
        """Pass over pool ``name`` for ``backoff_s``; returns until when."""
        rt = self.pools.get(name)
        if rt is None:
            return None
        with rt.lock:
            rt.last_error = reason
            rt.backoff_reason = reason
            rt.unavailable_until_s = max(rt.unavailable_until_s or 0.0, now_s + self.backoff_s)
            return rt.unavailable_until_s


def _restore(rt: PoolRuntime, obj: Mapping[str, Any], now_s: float, backoff_s: float) -> None:
    """A restarted controller keeps a pool's backoff and last scale time from its status."""
    status = obj.get("status") or {}
    rt.last_scale_s = parse_time(status.get("lastScaleTime"))
    rt.last_error = str(status.get("lastError") or "")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Available" and cond.get("status") == "False":
            since = parse_time(cond.get("lastTransitionTime")) or now_s
            if since + backoff_s > now_s:
                rt.unavailable_until_s = since + backoff_s
                rt.backoff_reason = str(cond.get("message") or "")
