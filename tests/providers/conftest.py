"""Fixtures for the provider tests: one contract harness per backend."""

from __future__ import annotations

from typing import Any

import pytest
from prov_fake_harness import FakeHarness

BACKENDS = ["fake"]


@pytest.fixture
def fake_harness() -> FakeHarness:
    return FakeHarness()


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_harness")
