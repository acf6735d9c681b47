"""Per-quantile blends of fitted models: what the automatic chooser hands out.

Each quantile comes from one model or from the average of two (quantile averaging,
"Vincentisation": the average of two forecasters' q-quantiles, which on GPU demand often
beats both because their errors are only partly correlated).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from predictors.base import Forecaster, IntArray, Quantiles, Series, tidy_quantiles

Recipe = Mapping[float, tuple[str, ...]]
"""quantile -> names of the models averaged for it."""


def describe(recipe: Recipe) -> str:
    """``regression`` when every quantile has the same recipe, else
    ``p10=naive-quantiles p50=regression p90=naive-quantiles+regression``."""
    names = {"+".join(members) for members in recipe.values()}
    if len(names) == 1:
        return names.pop()
    return " ".join(f"p{round(q * 100)}={'+'.join(m)}" for q, m in sorted(recipe.items()))


class QuantileBlend:
    """Fitted ``models`` combined per quantile by ``recipe``; only ``predict_at``."""

    def __init__(self, recipe: Recipe, models: Mapping[str, Forecaster]) -> None:
        missing = {name for members in recipe.values() for name in members} - set(models)
        if missing:
            raise ValueError(f"blend recipe names unfitted models: {', '.join(sorted(missing))}")
        self.recipe = dict(recipe)
        self.models = dict(models)
        self.name = describe(recipe)

    def predict_at(
        self, series: Series, origins: IntArray, h: int, quantiles: Sequence[float]
    ) -> Quantiles:
        wanted = sorted({float(q) for q in quantiles})
        needed = sorted({name for q in wanted for name in self._members(q)})
        per_model = {
            name: self.models[name].predict_at(series, origins, h, wanted) for name in needed
        }
        out = {}
        for q in wanted:
            members = self._members(q)
            out[q] = np.mean([per_model[name][q] for name in members], axis=0)
        return tidy_quantiles(out)

    def _members(self, q: float) -> tuple[str, ...]:
        """The recipe of ``q``, or of the nearest quantile that has one."""
        if q in self.recipe:
            return self.recipe[q]
        nearest = min(self.recipe, key=lambda level: abs(level - q))
        return self.recipe[nearest]
