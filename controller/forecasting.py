"""The seam between the controller and the forecasters in ``predictors/``.

Only the ``predictive`` policy reads a forecast. For it, the persisted demand history
(:mod:`controller.state`) is handed to ``predictors.auto.AutoForecaster`` — the automatic
chooser the simulator also uses — in a background thread every ``every_s``: choosing and
refitting models can take seconds, and the scaling loop must never wait for it. A pass
uses the latest forecast there is. With no forecaster installed, no history yet, or a
forecaster that fails, the forecast is empty and the predictive policy falls back to
reactive (its plan says so).

A forecast also carries the arrival scenarios, as the simulator's does: every DLJob and
DLService replica is observed once as it arrives (:mod:`controller.arrivals`), and a pass's
forecast holds the gangs that arrived in past windows as long as the lead time (the longest
NodePool provisioning delay times ``leadTimeFactor``). Only beside a demand forecast: without
one the policy acts reactively and reads no scenarios.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from controller.arrivals import ArrivalLog, window_s
from controller.dljob import JobView
from controller.dlservice import ServiceView
from controller.state import DemandHistory
from dlscaler.config import PolicyConfig, PoolModel
from dlscaler.model import EMPTY_FORECAST, Forecast
from dlscaler.policy.forecast_needs import forecast_shape

log = logging.getLogger("dlscaler.forecasting")

MIN_POINTS = 3


def auto_forecaster(config: PolicyConfig) -> Any | None:
    """``predictors.auto.AutoForecaster`` for this policy, or None if not installed."""
    try:
        from predictors.auto import AutoForecaster
    except ImportError:
        return None
    quantiles, horizon_s = forecast_shape(config)
    return AutoForecaster(horizon_s=horizon_s, quantiles=quantiles)


class Forecasting:
    def __init__(
        self,
        config: PolicyConfig,
        forecaster: Any | None = None,
        *,
        every_s: float = 60.0,
        background: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``forecaster``: anything with ``forecast(now_s, horizon_s, series=Series)``
        (default: the automatic chooser). ``background=False`` refreshes inline (tests)."""
        self.active = config.policy == "predictive"
        self.config = config
        self.every_s = every_s
        self.clock = clock
        self.forecaster = None
        self.horizon_s = forecast_shape(config)[1]
        if self.active:
            try:
                self.forecaster = forecaster or auto_forecaster(config)
            except Exception:  # a broken forecaster must not stop the controller
                log.exception("no forecaster; the predictive policy will act reactively")
        if self.active and self.forecaster is None:
            log.warning("predictors are not installed: the predictive policy acts reactively")
        self.model = type(self.forecaster).__name__ if self.forecaster else "none"
        self._latest = EMPTY_FORECAST
        self._lock = threading.Lock()
        self._refreshed_at = -float("inf")
        self._running: Future[None] | None = None
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast") if background else None
        )
        self.arrivals = ArrivalLog() if self.active else None
        """The arrivals seen (kept for the predictive policy only)."""

    def update(self, history: DemandHistory, now_s: float) -> None:
        """Start a refresh from ``history`` if one is due and none is running."""
        if self.forecaster is None or len(history.values) < MIN_POINTS:
            return
        if self._running is not None and not self._running.done():
            return
        mono = self.clock()
        if mono - self._refreshed_at < self.every_s:
            return
        self._refreshed_at = mono
        start_s, step_s, values = history.series()
        if self._executor is None:
            self._refresh(start_s, step_s, values, now_s)
        else:
            self._running = self._executor.submit(self._refresh, start_s, step_s, values, now_s)

    def _refresh(self, start_s: float, step_s: float, values: list[float], now_s: float) -> None:
        from predictors.base import Series

        assert self.forecaster is not None
        started = time.perf_counter()
        try:
            series = Series(values=np.asarray(values, dtype=float), step_s=step_s, start_s=start_s)
            forecast = self.forecaster.forecast(now_s, self.horizon_s, series=series)
        except Exception:
            log.exception("forecaster failed; keeping the previous forecast")
            return
        with self._lock:
            self._latest = forecast
        log.debug("forecast refreshed in %.2f s (%s)", time.perf_counter() - started,
                  getattr(forecast, "model", ""))  # fmt: skip

    def forecast(self, now_s: float, pools: Sequence[PoolModel] = ()) -> Forecast:
        """The latest demand forecast, with the arrival scenarios at ``now_s`` in windows
        of the lead time of ``pools`` (the managed NodePools)."""
        if not self.active:
            return EMPTY_FORECAST
        with self._lock:
            latest = self._latest
        if (
            self.arrivals is None
            or not latest.quantiles
            or self.config.predictive.arrival_quantile <= 0
        ):
            return latest
        scenarios = self.arrivals.scenarios(now_s, window_s(self.config, pools))
        return replace(latest, arrival_scenarios=scenarios) if scenarios else latest

    # --- arrivals --------------------------------------------------------------------------

    def observe_arrivals(
        self, jobs: Sequence[JobView], services: Sequence[ServiceView], now_s: float
    ) -> None:
        """Record the DLJobs and DLService replicas that arrived since the last pass."""
        if self.arrivals is not None:
            self.arrivals.observe_cluster(jobs, services, now_s)

    def restore_arrivals(self, text: str, now_s: float) -> None:
        """Add the arrivals saved in the state ConfigMap (an unreadable record is skipped:
        the scenarios then start from what the cluster still lists)."""
        if self.arrivals is None or not text:
            return
        try:
            added = self.arrivals.restore(text, now_s)
        except ValueError as err:
            log.warning("ignoring the saved arrivals: %s", err)
            return
        log.info("arrivals: %d from the state ConfigMap", added)

    def arrivals_record(self, now_s: float) -> str | None:
        """The arrivals to save (``None``: nothing kept, leave the saved key alone)."""
        return self.arrivals.encode(now_s) if self.arrivals is not None else None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
