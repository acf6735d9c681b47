from __future__ import annotations

from types import MappingProxyType

import numpy as np
import pytest

from dlscaler.model import Gang
from predictors.runtime import RuntimeRegressor


def synthetic_jobs(n: int, seed: int = 0) -> list[Gang]:
    """Run time = epochs x dataset / GPUs (x noise): what the hints should reveal."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(n):
        gpus = int(rng.choice([1, 2, 4, 8]))
        epochs = int(rng.integers(1, 50))
        dataset_gb = float(rng.uniform(1, 500))
        duration = 60.0 * epochs * dataset_gb / gpus * float(rng.lognormal(0, 0.1))
        attrs = {
            "epochs": str(epochs),
            "datasetSizeGb": f"{dataset_gb:.1f}",
            "framework": "pytorch",
        }
        jobs.append(
            Gang(
                f"j{i}",
                float(i),
                workers=1,
                gpus_per_worker=gpus,
                queue=str(rng.choice(["research", "prod"])),
                duration_s=duration,
                attributes=MappingProxyType(attrs),
            )
        )
    return jobs


def log_error(predicted: np.ndarray, jobs: list[Gang]) -> float:
    actual = np.array([j.duration_s for j in jobs])
    return float(np.median(np.abs(np.log(predicted) - np.log(actual))))


def test_learns_run_time_from_hints_much_better_than_the_median():
    jobs = synthetic_jobs(600)
    train, test = jobs[:500], jobs[500:]
    model = RuntimeRegressor().fit(train)
    assert model.trained
    fallback = RuntimeRegressor(min_jobs=10**6).fit(train)
    assert log_error(model.predict_s(test), test) < 0.3 * log_error(fallback.predict_s(test), test)


def test_untrained_answers_the_queue_median_then_the_default():
    jobs = [
        Gang("a", 0, 1, 1, queue="fast", duration_s=60.0),
        Gang("b", 0, 1, 1, queue="fast", duration_s=120.0),
        Gang("c", 0, 1, 1, queue="slow", duration_s=7200.0),
    ]
    model = RuntimeRegressor().fit(jobs)
    assert not model.trained
    probe = [Gang("x", 0, 1, 1, queue="fast"), Gang("y", 0, 1, 1, queue="slow")]
    np.testing.assert_allclose(model.predict_s(probe), [np.sqrt(60 * 120), 7200.0])
    assert RuntimeRegressor(default_s=900.0).predict_s(probe)[0] == pytest.approx(900.0)


def test_remaining_time_grows_with_age_once_past_the_typical_run():
    model = RuntimeRegressor().fit(synthetic_jobs(300))
    job = synthetic_jobs(1, seed=5)[0]
    young, old, ancient = model.remaining_s([job] * 3, [0.0, 1e6, 1e9])
    assert young > 0
    assert old > 0 and ancient >= 1e9 - 1  # beyond anything seen: as much again


def test_gpu_hours_are_run_time_times_gpus():
    model = RuntimeRegressor(default_s=3600.0)
    job = Gang("x", 0, workers=2, gpus_per_worker=4)
    assert model.gpu_hours([job])[0] == pytest.approx(8.0)
