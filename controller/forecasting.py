"""The seam between the controller and the forecasters in ``predictors/``.

The controller keeps the demand history (:mod:`controller.state`) and asks a forecast
source for quantiles each pass. Only the ``predictive`` policy reads a forecast; for the
others, and whenever no forecaster can be loaded or a forecaster fails, the forecast is
empty and the predictive policy falls back to reactive (and its plan says so). A
forecaster's failure must never stop the scaling loop.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Protocol

from controller.state import DemandHistory
from dlscaler.config import PolicyConfig
from dlscaler.model import EMPTY_FORECAST, Forecast

log = logging.getLogger("dlscaler.forecasting")


class ForecastSource(Protocol):
    """The simulator's protocol (``simulator.runner.ForecastSource``): demand in, quantiles out."""

    def observe(self, now_s: float, demand_gpus: float) -> None: ...

    def forecast(self, now_s: float) -> Forecast: ...


class NoForecast:
    def observe(self, now_s: float, demand_gpus: float) -> None:
        del now_s, demand_gpus

    def forecast(self, now_s: float) -> Forecast:
        del now_s
        return EMPTY_FORECAST


def _predictor_source(config: PolicyConfig) -> ForecastSource | None:
    """The automatic forecaster of ``predictors`` if it is installed: a module
    ``predictors.auto`` with ``forecast_source(config) -> ForecastSource``."""
    try:
        module: Any = importlib.import_module("predictors.auto")
    except ImportError:
        return None
    factory = getattr(module, "forecast_source", None)
    if factory is None:
        return None
    source: ForecastSource = factory(config)
    return source


class Forecasting:
    """Feeds the history to the source and shields the loop from its failures."""

    def __init__(self, config: PolicyConfig, source: ForecastSource | None = None) -> None:
        self.active = config.policy == "predictive"
        self.source: ForecastSource = NoForecast()
        if self.active:
            try:
                self.source = source or _predictor_source(config) or NoForecast()
            except Exception:  # a broken forecaster must not stop the controller
                log.exception("could not load a forecaster; the predictive policy acts reactively")
        self.model = type(self.source).__name__
        self._fed_until_s: float | None = None

    def catch_up(self, history: DemandHistory, now_s: float) -> None:
        """Give the source every finished step of the history it has not seen yet (after a
        restart: the whole persisted history)."""
        if not self.active or history.start_s is None:
            return
        for i, value in enumerate(history.values):
            t = history.start_s + i * history.step_s
            if self._fed_until_s is not None and t < self._fed_until_s:
                continue
            if t + history.step_s > now_s:
                return  # the current step is still collecting its peak
            try:
                self.source.observe(t, value)
            except Exception:
                log.exception("forecaster failed to take an observation")
                return
            self._fed_until_s = t + history.step_s

    def forecast(self, now_s: float) -> Forecast:
        if not self.active:
            return EMPTY_FORECAST
        try:
            return self.source.forecast(now_s)
        except Exception:
            log.exception("forecaster failed; acting without a forecast this pass")
            return EMPTY_FORECAST
