"""Builders for simulator tests: small traces and pools made through the same parsers the
``dlscaler simulate`` command uses, and the bundled slice of the real trace."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from dlscaler.config import PoolModel, parse_pools
from dlscaler.trace import Trace, parse_trace

DATA = Path(__file__).resolve().parent.parent / "data"


def _trace_of(rows: Sequence[Sequence[object]], *, columns: str = "") -> Trace:
    """A trace from ``(submit_s, duration_s, num_gpus, *extra)`` rows; job ids are
    ``j0, j1, ...`` in row order; ``columns`` names the extra columns (comma-separated)."""
    header = "job_id,submit_s,duration_s,num_gpus" + (f",{columns}" if columns else "")
    lines = [header + "\n"]
    for i, row in enumerate(rows):
        lines.append(",".join([f"j{i}", *(str(v) for v in row)]) + "\n")
    return parse_trace(lines, source="test-trace")


def _pool_of(name: str = "pool", **fields: Any) -> PoolModel:
    """A pool as a pools file gives it (camelCase fields); 8-GPU nodes at 8 USD/h,
    0..20 nodes, 300 s boot unless told otherwise."""
    spec = {
        "name": name,
        "gpusPerNode": 8,
        "maxNodes": 20,
        "pricePerHour": 8.0,
        "provisioningDelaySeconds": 300,
        **fields,
    }
    [model] = parse_pools([spec], source="test-pools")
    return model


@pytest.fixture(scope="session")
def trace_of() -> Callable[..., Trace]:
    return _trace_of


@pytest.fixture(scope="session")
def pool_of() -> Callable[..., PoolModel]:
    return _pool_of


@pytest.fixture(scope="session")
def openb_window() -> Path:
    """300 consecutive jobs (0.7 days, by submit time) of the bundled Alibaba trace."""
    return DATA / "openb_window.csv"


@pytest.fixture
def small() -> tuple[Trace, list[PoolModel]]:
    """A few gangs over two hours and a pool for them: a tune trial simulates it in
    milliseconds."""
    rows = [(i * 600, 1200 + 300 * (i % 3), [1, 8, 16][i % 3]) for i in range(12)]
    return _trace_of(rows), [_pool_of(maxNodes=50)]
