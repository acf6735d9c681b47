"""Model names -> constructors, for the CLI, the backtest and the automatic chooser."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from predictors.base import DAY_S, DEFAULT_QUANTILES, WEEK_S, Forecaster
from predictors.baselines import Naive, NaiveQuantiles, SeasonalNaive
from predictors.ets import HoltWinters
from predictors.regression import QuantileRegression
from predictors.structural import StructuralForecaster

ModelFactory = Callable[[int, tuple[float, ...]], Forecaster]
"""(horizon in steps, quantiles) -> an unfitted model."""

BASELINES: dict[str, ModelFactory] = {
    "naive": lambda h, qs: Naive(),
    "seasonal-naive-daily": lambda h, qs: SeasonalNaive(DAY_S),
    "seasonal-naive-weekly": lambda h, qs: SeasonalNaive(WEEK_S),
    "naive-quantiles": lambda h, qs: NaiveQuantiles(),
}
POINT_BASELINES: tuple[str, ...] = ("naive", "seasonal-naive-daily", "seasonal-naive-weekly")
"""MAE is scored relative to the best of these."""
QUANTILE_BASELINE = "naive-quantiles"
"""Pinball loss is scored relative to this one."""

CANDIDATES: dict[str, ModelFactory] = {
    **BASELINES,
    "ets": lambda h, qs: HoltWinters(horizon=h),
    "regression": lambda h, qs: QuantileRegression(horizon=h, quantiles=qs),
    "structural": lambda h, qs: StructuralForecaster(horizon=h),
}
"""What the automatic chooser picks from, in order of preference on a tie (simplest first)."""

AUTO = "auto"


def model_names() -> list[str]:
    return [*CANDIDATES, AUTO]


def make_model(
    name: str, horizon: int, quantiles: Sequence[float] = DEFAULT_QUANTILES
) -> Forecaster:
    qs = tuple(sorted(quantiles))
    if name == AUTO:
        from predictors.auto import AutoForecaster

        return AutoForecaster(horizon_steps=horizon, quantiles=qs)
    try:
        factory = CANDIDATES[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; choose from {', '.join(model_names())}"
        ) from None
    return factory(horizon, qs)
