"""Fixtures for the provider tests: the loopback clouds and one contract harness per backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from prov_aws import AwsCloud, AwsHarness, moto_server
from prov_azure import AzureCloud, AzureHarness
from prov_fake_harness import FakeHarness
from prov_gcp import GcpCloud, GcpHarness

from providers.fake import FaultRates

BACKENDS = ["fake", "aws", "gcp", "gcp_regional", "azure"]


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def aws_cloud(moto_url: str) -> Iterator[AwsCloud]:
    cloud = AwsCloud(moto_url)
    with cloud.server:
        yield cloud


@pytest.fixture(scope="session")
def gcp_cloud() -> Iterator[GcpCloud]:
    cloud = GcpCloud()
    with cloud.server:
        yield cloud


def _fresh(cloud: Any) -> None:
    cloud.faults.clear()
    cloud.faults.set_rates(FaultRates())


H = TypeVar("H")


def _on_clean_cloud(cloud: Any, harness: H) -> Iterator[H]:
    """``harness`` on a session cloud with no faults left from an earlier test; afterwards
    the loopback server must not have failed on any request (a bug in the fake, not a
    refusal it was asked for)."""
    _fresh(cloud)
    yield harness
    _fresh(cloud)
    assert not cloud.server.errors, cloud.server.errors


@pytest.fixture
def gcp_harness(gcp_cloud: GcpCloud) -> Iterator[GcpHarness]:
    yield from _on_clean_cloud(gcp_cloud, GcpHarness(gcp_cloud))


@pytest.fixture
def gcp_regional_harness(gcp_cloud: GcpCloud) -> Iterator[GcpHarness]:
    yield from _on_clean_cloud(gcp_cloud, GcpHarness(gcp_cloud, regional=True))


@pytest.fixture(scope="session")
def azure_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureCloud]:
    cloud = AzureCloud.with_test_ca(str(tmp_path_factory.mktemp("azure-tls")))
    with cloud.server:
        yield cloud


@pytest.fixture
def azure_harness(azure_cloud: AzureCloud) -> Iterator[AzureHarness]:
    yield from _on_clean_cloud(azure_cloud, AzureHarness(azure_cloud))


@pytest.fixture
def fake_harness() -> FakeHarness:
    return FakeHarness()


@pytest.fixture
def aws_harness(aws_cloud: AwsCloud) -> Iterator[AwsHarness]:
    yield from _on_clean_cloud(aws_cloud, AwsHarness(aws_cloud))


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_harness")
