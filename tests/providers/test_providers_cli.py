"""``dlscaler providers check --pools FILE``: what it prints, and its exit status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from prov_aws import REGION, AwsCloud
from prov_harness import unique_name
from typer.testing import CliRunner

from dlscaler.cli import app


def write_pools(tmp_path: Path, *pools: dict[str, Any]) -> str:
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump({"pools": list(pools)}))
    return str(path)


def aws_pool(name: str, group: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "aws",
        "groupId": group,
        "region": REGION,
        "gpusPerNode": 8,
        "maxNodes": 4,
        "pricePerHour": 32.77,
        **extra,
    }


@pytest.fixture
def aws_env(aws_cloud: AwsCloud, monkeypatch: pytest.MonkeyPatch) -> AwsCloud:
    """The real default client path, pointed at the loopback proxy the way any boto3
    user would (AWS_ENDPOINT_URL), with test keys from the environment."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_cloud.server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    aws_cloud.faults.clear()
    return aws_cloud


def test_check_describes_reachable_pools_and_exits_zero(aws_env: AwsCloud, tmp_path: Path) -> None:
    group = unique_name("asg-cli")
    aws_env.create_asg(group, min_size=0, max_size=4, desired=2)
    pools = write_pools(tmp_path, aws_pool("a100", group, gpuType="a100"))
    result = CliRunner().invoke(app, ["providers", "check", "--pools", pools])
    assert result.exit_code == 0, result.output
    assert f"pool a100 (aws): Auto Scaling group {group} in {REGION}" in result.output
    assert "target 2 (bounds 0..4), instances: 2 running" in result.output
    assert "nodes: p4d.24xlarge, 8 x a100, 96 vCPU, 1152 GiB" in result.output
    assert "1 pools checked: all reachable" in result.output


def test_check_names_the_missing_permission_and_exits_one(
    aws_env: AwsCloud, tmp_path: Path
) -> None:
    group = unique_name("asg-cli")
    aws_env.create_asg(group, min_size=0, max_size=4, desired=0)
    aws_env.faults.inject("permission", "read")
    pools = write_pools(tmp_path, aws_pool("a100", group))
    result = CliRunner().invoke(app, ["providers", "check", "--pools", pools])
    assert result.exit_code == 1, result.output
    assert (
        "permission denied: dlscaler's identity lacks autoscaling:DescribeAutoScalingGroups"
        in result.output
    )
    assert "docs/providers.md" in result.output


def test_check_reports_every_pool_even_when_one_fails(aws_env: AwsCloud, tmp_path: Path) -> None:
    group = unique_name("asg-cli")
    aws_env.admin["autoscaling"].create_auto_scaling_group(  # type: ignore[attr-defined]
        AutoScalingGroupName=group,
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateName": AwsCloud.LAUNCH_TEMPLATE}
            },
            "InstancesDistribution": {"OnDemandPercentageAboveBaseCapacity": 100},
        },
        MinSize=0,
        MaxSize=2,
        AvailabilityZones=["us-east-1a"],
    )
    pools = write_pools(
        tmp_path,
        aws_pool("missing", "no-such-group"),
        # The pool file's bounds and GPUs differ from the group's: warnings, not errors.
        aws_pool("mismatch", group, gpusPerNode=4, spot=True),
    )
    result = CliRunner().invoke(app, ["providers", "check", "--pools", pools, "-o", "json"])
    assert result.exit_code == 1
    by_pool = {item["pool"]: item for item in json.loads(result.output)}
    assert by_pool["missing"]["error"]["kind"] == "invalid-config"
    assert "no Auto Scaling group named 'no-such-group'" in by_pool["missing"]["error"]["message"]
    warnings = " ".join(by_pool["mismatch"]["warnings"])
    assert by_pool["mismatch"]["ok"]
    assert "gpusPerNode 4 but p4d.24xlarge nodes have 8 GPUs" in warnings
    assert "allows 0..2 nodes but the pool asks for 0..4" in warnings
    assert "spot: true but the group's nodes are on-demand" in warnings


def test_check_explains_configuration_and_credential_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    pools = write_pools(
        tmp_path,
        {"name": "h100", "provider": "gcp", "groupId": "mig", "zone": "us-central1-a",
         "gpusPerNode": 8, "maxNodes": 4, "pricePerHour": 90, "gcp": {"project": "my-project"}},
        {"name": "nd", "provider": "azure", "groupId": "vmss", "gpusPerNode": 8,
         "maxNodes": 4, "pricePerHour": 90, "azure": {"subscriptionId": "nope"}},
        {"name": "fake", "provider": "fake", "gpusPerNode": 8, "maxNodes": 4, "pricePerHour": 1},
    )  # fmt: skip
    result = CliRunner().invoke(app, ["providers", "check", "--pools", pools])
    assert result.exit_code == 1
    assert "ERROR not authenticated:" in result.output
    assert "azure.subscriptionId: 'nope' is not an Azure subscription id" in result.output
    assert "azure.resourceGroup: Field required" in result.output
    assert "pool fake (fake): in-memory fake group fake" in result.output
    assert "3 pools checked: 2 with errors" in result.output


def test_invalid_pools_file_exits_two_naming_the_field(tmp_path: Path) -> None:
    pools = write_pools(tmp_path, {"name": "x", "provider": "aws", "gpusPerNode": 8})
    result = CliRunner().invoke(app, ["providers", "check", "--pools", pools])
    assert result.exit_code == 2
    assert "maxNodes" in result.output and "Field required" in result.output


def test_unknown_pool_name_is_refused(tmp_path: Path) -> None:
    pools = write_pools(
        tmp_path,
        {"name": "x", "provider": "fake", "gpusPerNode": 8, "maxNodes": 1, "pricePerHour": 1},
    )
    result = CliRunner().invoke(app, ["providers", "check", "--pools", pools, "--pool", "y"])
    assert result.exit_code == 2 and "no pool named y" in result.output
