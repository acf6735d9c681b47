"""The forecast a simulated controller would have: fitted only on demand observed so far.

The simulator calls :meth:`observe` once per sample step with the GPUs requested at that
moment (pending plus running gangs, what the controller sees), :meth:`observe_arrival` for
each gang as it is submitted (its duration hidden) and :meth:`forecast` when the policy
decides. Nothing from the trace's future reaches the forecaster.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dlscaler.config import PolicyConfig
from dlscaler.model import EMPTY_FORECAST, Forecast, Gang
from dlscaler.policy.forecast_needs import arrival_window_s, forecast_shape
from predictors.arrivals import ArrivalWindows
from simulator.runner import ForecastSource

DAY_S = 86_400.0
HISTORY_S = 15 * DAY_S
"""How much history the forecaster is given: two weekly seasons and a day, enough for
every model while keeping each refit bounded on a long trace."""
SIM_MODELS: tuple[str, ...] = ("naive", "naive-quantiles", "seasonal-naive-daily")
"""The candidates a simulated controller chooses among. Replaying months of history means
tens of thousands of forecasts and hundreds of refits per run (and per tuning trial), so
the simulator uses the models that cost milliseconds; ``dlscaler forecast`` measures how
much the slower ones would add on a given trace."""


class NoForecast:
    """No forecaster: ``predictive`` falls back to ``reactive`` (and says so)."""

    def observe(self, now_s: float, demand_gpus: float) -> None:
        del now_s, demand_gpus

    def forecast(self, now_s: float) -> Forecast:
        del now_s
        return EMPTY_FORECAST


class PredictorForecast:
    """The predictors' automatic chooser over the demand observed so far."""

    def __init__(
        self,
        *,
        quantiles: tuple[float, ...],
        horizon_s: float,
        step_s: float = 300.0,
        history_s: float = HISTORY_S,
        models: tuple[str, ...] = SIM_MODELS,
        every_steps: int = 3,
        refit_every_s: float = 86_400.0,
        arrival_window_s: float | None = None,
    ) -> None:
        from predictors.auto import AutoForecaster
        from predictors.registry import CANDIDATES

        unknown = [m for m in models if m not in CANDIDATES]
        if unknown:
            raise ValueError(f"unknown forecast model(s) {unknown}; choose from {list(CANDIDATES)}")
        self.step_s = step_s
        self.horizon_s = horizon_s
        self.every_steps = every_steps
        self.max_points = max(1, int(history_s // step_s))
        self.auto = AutoForecaster(
            horizon_s=horizon_s,
            quantiles=quantiles,
            candidates={m: CANDIDATES[m] for m in models},
            refit_every_s=refit_every_s,
        )
        self._values = np.zeros(1024)
        self._n = 0
        self._start_s: float | None = None
        self._cached: Forecast = EMPTY_FORECAST
        self._cached_n = -1
        self.arrivals = (
            ArrivalWindows(arrival_window_s, step_s=step_s) if arrival_window_s else None
        )

    def observe_arrival(self, gang: Gang) -> None:
        if self.arrivals is not None:
            self.arrivals.observe(gang)

    def observe(self, now_s: float, demand_gpus: float) -> None:
        if self._start_s is None:
            self._start_s = now_s
        if self._n == len(self._values):
            self._values = np.concatenate([self._values, np.zeros(len(self._values))])
        self._values[self._n] = demand_gpus
        self._n += 1

    def forecast(self, now_s: float) -> Forecast:
        # A new forecast every ``every_steps`` observations (a controller's forecast loop
        # runs slower than its decision loop); in between, the last one stands.
        if self._start_s is not None and self._n - self._cached_n >= self.every_steps:
            self._refresh(now_s)
        if self.arrivals is None or not self._cached.quantiles:
            return self._cached
        return replace(self._cached, arrival_scenarios=self.arrivals.scenarios(now_s))

    def _refresh(self, now_s: float) -> None:
        from predictors.base import Series

        assert self._start_s is not None
        first = max(0, self._n - self.max_points)
        series = Series(
            values=self._values[first : self._n],
            step_s=self.step_s,
            start_s=self._start_s + first * self.step_s,
        )
        self._cached = self.auto.forecast(now_s, self.horizon_s, series=series)
        self._cached_n = self._n


def default_forecast_factory(config: PolicyConfig, lead_s: float = 300.0) -> ForecastSource | None:
    """The forecaster the controller would run for this policy config; ``lead_s``: the
    provisioning lead time (the longest pool delay times ``leadTimeFactor``), the length
    of the arrival windows."""
    quantiles, horizon_s = forecast_shape(config)
    try:
        return PredictorForecast(
            quantiles=quantiles,
            horizon_s=horizon_s,
            arrival_window_s=(
                arrival_window_s(lead_s) if config.predictive.arrival_quantile > 0 else None
            ),
        )
    except ImportError:
        return NoForecast()
