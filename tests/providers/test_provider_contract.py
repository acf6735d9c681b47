"""The one contract every provider meets, run against each backend."""

from __future__ import annotations

from typing import Any

import pytest

from providers.contract import CHECKS, NotApplicable


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_provider_meets_contract(harness: Any, check: str) -> None:
    try:
        CHECKS[check](harness)
    except NotApplicable as why:
        pytest.skip(f"{check}: {why}")
