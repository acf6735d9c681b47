"""The forecast a simulated controller would have: fitted only on demand observed so far.

The simulator calls :meth:`observe` once per sample step with the GPUs requested at that
moment (pending plus running gangs, what the controller sees), :meth:`observe_arrival` for
each gang as it is submitted (its duration hidden) and :meth:`forecast` when the policy
decides. Nothing from the trace's future reaches the forecaster.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from dlscaler.config import PolicyConfig, PoolModel
from dlscaler.model import EMPTY_FORECAST, Forecast, Gang
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


class ArrivalWindows:
    """The arrival scenarios of a forecast: the gangs submitted in past windows of the lead
    time's length, at the same time of day on each of the last ``days`` days (``offsets``
    windows either side, a ``step_s`` apart) and in the last ``recent`` windows."""

    def __init__(
        self,
        window_s: float,
        *,
        step_s: float = 300.0,
        days: int = 7,
        offsets: int = 6,
        recent: int = 24,
    ) -> None:
        if window_s <= 0:
            raise ValueError(f"arrival window must be positive, got {window_s}")
        self.window_s = window_s
        self.step_s = step_s
        self.days = days
        self.offsets = offsets
        self.recent = recent
        self._times: list[float] = []
        self._gangs: list[Gang] = []
        self._first = 0

    def observe(self, gang: Gang) -> None:
        self._times.append(gang.submit_s)
        self._gangs.append(gang)

    def scenarios(self, now_s: float) -> tuple[tuple[Gang, ...], ...]:
        keep_from = now_s - (self.days * DAY_S + self.offsets * self.step_s + self.window_s)
        while self._first < len(self._times) and self._times[self._first] < keep_from:
            self._first += 1
        if self._first > 4096 and self._first * 2 > len(self._times):
            del self._times[: self._first], self._gangs[: self._first]
            self._first = 0
        if self._first == len(self._times):
            return ()
        earliest = self._times[self._first]
        starts = [now_s - self.window_s - j * self.step_s for j in range(self.recent)]
        for d in range(1, self.days + 1):
            for k in range(-self.offsets, self.offsets + 1):
                start = now_s - d * DAY_S + k * self.step_s
                if start + self.window_s <= now_s:
                    starts.append(start)
        out = []
        for start in starts:
            if start < earliest - self.step_s:
                continue  # before the history began: not a sample of anything
            lo = bisect.bisect_left(self._times, start, self._first)
            hi = bisect.bisect_left(self._times, start + self.window_s, lo)
            out.append(tuple(self._gangs[lo:hi]))
        return tuple(out)


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


def lead_time_s(config: PolicyConfig, pools: Sequence[PoolModel]) -> float:
    """The provisioning lead time the predictive policy plans over: the longest pool
    delay times ``leadTimeFactor``."""
    delay = max((p.provisioning_delay_s for p in pools), default=300.0)
    return config.predictive.lead_time_factor * delay


def default_forecast_factory(config: PolicyConfig, lead_s: float = 300.0) -> ForecastSource | None:
    """The forecaster the controller would run for this policy config; ``lead_s``: the
    provisioning lead time (the longest pool delay times ``leadTimeFactor``), the length
    of the arrival windows."""
    p = config.predictive
    quantiles = tuple(sorted({0.1, 0.5, 0.9, p.quantile, p.scale_down_quantile}))
    # Look far enough ahead for the lead time and the scale-down window.
    horizon_s = max(3_600.0, config.idle_timeout_s, 900.0 * p.lead_time_factor)
    try:
        return PredictorForecast(
            quantiles=quantiles,
            horizon_s=horizon_s,
            arrival_window_s=max(lead_s, 60.0) if p.arrival_quantile > 0 else None,
        )
    except ImportError:
        return NoForecast()
