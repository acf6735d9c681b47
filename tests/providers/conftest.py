"""Fixtures for the provider tests: the loopback clouds and one contract harness per backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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


@pytest.fixture
def gcp_harness(gcp_cloud: GcpCloud) -> Iterator[GcpHarness]:
    _fresh(gcp_cloud)
    yield GcpHarness(gcp_cloud)
    _fresh(gcp_cloud)
    assert not gcp_cloud.server.errors, gcp_cloud.server.errors


@pytest.fixture
def gcp_regional_harness(gcp_cloud: GcpCloud) -> Iterator[GcpHarness]:
    _fresh(gcp_cloud)
    yield GcpHarness(gcp_cloud, regional=True)
    _fresh(gcp_cloud)
    assert not gcp_cloud.server.errors, gcp_cloud.server.errors


@pytest.fixture(scope="session")
def azure_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureCloud]:
    cloud = AzureCloud.with_test_ca(str(tmp_path_factory.mktemp("azure-tls")))
    with cloud.server:
        yield cloud


@pytest.fixture
def azure_harness(azure_cloud: AzureCloud) -> Iterator[AzureHarness]:
    _fresh(azure_cloud)
    yield AzureHarness(azure_cloud)
    _fresh(azure_cloud)
    assert not azure_cloud.server.errors, azure_cloud.server.errors


@pytest.fixture
def fake_harness() -> FakeHarness:
    return FakeHarness()


@pytest.fixture
def aws_harness(aws_cloud: AwsCloud) -> Iterator[AwsHarness]:
    aws_cloud.faults.clear()
    aws_cloud.faults.set_rates(FaultRates())
    yield AwsHarness(aws_cloud)
    aws_cloud.faults.clear()
    assert not aws_cloud.server.errors, aws_cloud.server.errors


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_harness")
