"""Synthetic demand series with a known answer, shared by the predictors' tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from predictors.base import DAY_S, Series

STEP_S = 300.0
DAY = int(DAY_S / STEP_S)


@pytest.fixture
def daily_sine() -> Callable[[float], Series]:
    """``days`` of 20 + 10 sin(2 pi t / 1 day) at a 5-minute step."""

    def make(days: float) -> Series:
        t = np.arange(int(days * DAY)) * STEP_S
        return Series(20 + 10 * np.sin(2 * np.pi * t / DAY_S), STEP_S, start_s=0.0)

    return make


@pytest.fixture
def constant() -> Callable[[float, float], Series]:
    def make(days: float, level: float = 7.0) -> Series:
        return Series(np.full(int(days * DAY), level), STEP_S)

    return make


@pytest.fixture
def random_walk() -> Callable[[float, int], Series]:
    """Integer demand that moves by whole GPUs: jobs starting and ending."""

    def make(days: float, seed: int = 0) -> Series:
        rng = np.random.default_rng(seed)
        steps = rng.choice([-1, 0, 0, 0, 1], size=int(days * DAY))
        return Series(np.maximum(200 + np.cumsum(steps), 0).astype(float), STEP_S)

    return make
