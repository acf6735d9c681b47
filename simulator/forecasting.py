"""The forecast a simulated controller would have: fitted only on demand observed so far."""

from __future__ import annotations

from dlscaler.config import PolicyConfig
from dlscaler.model import EMPTY_FORECAST, Forecast
from simulator.runner import ForecastSource


class NoForecast:
    """No forecaster: ``predictive`` falls back to ``reactive`` (and says so)."""

    def observe(self, now_s: float, demand_gpus: float) -> None:
        del now_s, demand_gpus

    def forecast(self, now_s: float) -> Forecast:
        del now_s
        return EMPTY_FORECAST


def default_forecast_factory(config: PolicyConfig) -> ForecastSource | None:
    del config
    return NoForecast()
