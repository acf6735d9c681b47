"""build_provider: the right adapter for each pool, and configuration errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from dlscaler.config import PoolModel
from dlscaler.pool import InvalidConfigError, NodePoolProvider
from providers import build_provider
from providers.fake import FakeCloud, FakeProvider
from providers.retry import Retrier, RetryPolicy

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"


def pool(provider: str, **fields: Any) -> PoolModel:
    data: dict[str, Any] = {
        "name": "a100",
        "provider": provider,
        "gpusPerNode": 8,
        "maxNodes": 4,
        "pricePerHour": 32.77,
    }
    data.update(fields)
    return PoolModel.model_validate(data)


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (pool("aws", groupId="g"), "region is required"),
        (pool("aws", region="us-east-1"), "groupId is required"),
        (
            pool("aws", region="us-east-1", aws={"clustername": "c"}),
            "aws.clustername: unknown field",
        ),
        (
            pool("aws", region="us-east-1", aws={"clusterName": "c", "autoScalingGroupName": "g"}),
            "not both",
        ),
        (
            pool("aws", region="us-east-1", aws={"nodegroupName": "n"}),
            "nodegroupName needs clusterName",
        ),
        (pool("gcp", groupId="m", zone="us-central1-a"), "gcp.project: Field required"),
        (pool("gcp", groupId="m", gcp={"project": "my-project"}), "zone or region is required"),
        (
            pool("gcp", groupId="m", zone="z", gcp={"project": "Bad_Project"}),
            "gcp.project: 'Bad_Project' is not a GCP project id",
        ),
        (
            pool("azure", groupId="v", azure={"subscriptionId": "nope", "resourceGroup": "rg"}),
            "azure.subscriptionId: 'nope' is not an Azure subscription id",
        ),
        (
            pool("azure", groupId="v", azure={"subscriptionId": SUBSCRIPTION}),
            "azure.resourceGroup: Field required",
        ),
        (pool("kwok", kwok={"availableNodes": -1}), "kwok.availableNodes: Input should be greater"),
    ],
)
def test_configuration_errors_name_the_pool_and_field(model: PoolModel, field: str) -> None:
    with pytest.raises(InvalidConfigError) as err:
        build_provider(model)
    assert field in str(err.value)
    assert err.value.pool == "a100" and err.value.kind.permanent


def test_fake_pool_builds_its_group_from_the_pool_spec() -> None:
    cloud = FakeCloud()
    p = build_provider(pool("fake", minNodes=1, labels={"team": "x"}), cloud=cloud)
    assert isinstance(p, FakeProvider) and isinstance(p, NodePoolProvider)
    d = p.describe()
    assert (d.min_size, d.max_size, d.target_size) == (1, 4, 1)
    assert p.node_template().labels["team"] == "x"


def test_unknown_overrides_are_an_error_not_ignored() -> None:
    with pytest.raises(TypeError, match="does not take compute"):
        build_provider(pool("fake"), compute=object())


def test_retry_overrides_reach_the_adapter() -> None:
    policy = RetryPolicy(max_attempts=2)
    p = build_provider(pool("fake"), retry_policy=policy)
    assert isinstance(p, FakeProvider) and p.retrier.policy is policy
    ready = Retrier(policy)
    p = build_provider(pool("fake"), retrier=ready)
    assert isinstance(p, FakeProvider) and p.retrier is ready
    with pytest.raises(TypeError, match="not both"):
        build_provider(pool("fake"), retrier=ready, retry_policy=policy)


def test_every_cloud_builds_with_default_clients_without_network() -> None:
    """Credentials are resolved on first use (default chains), never at construction."""
    built = [
        build_provider(pool("aws", groupId="g", region="us-east-1")),
        build_provider(pool("aws", groupId="n", region="us-east-1", aws={"clusterName": "c"})),
        build_provider(
            pool(
                "azure", groupId="v", azure={"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg"}
            )
        ),
    ]
    assert [p.group_id for p in built] == ["g", "n", "v"]
