"""dlscaler's demand forecasters and job-runtime regression (see docs/forecasting.md).

The surface other packages use:

- :class:`predictors.auto.AutoForecaster`: ``fit(series).forecast(now_s, horizon_s)`` ->
  :class:`dlscaler.model.Forecast`; never raises.
- :func:`predictors.series.demand_series`: gangs -> a :class:`predictors.base.Series` of
  peak demanded GPUs per step, with arrival and running-age covariates.
- :func:`predictors.backtest.backtest`: rolling-origin scoring of any models.
- :class:`predictors.runtime.RuntimeRegressor`: a job's median (remaining) run time.
"""
