"""AWS specifics the contract suite does not pin down: EC2 GPU facts, ASG template tags, spot,
EKS managed node groups, the exact permissions named, and the stockout's scaling activity."""

from __future__ import annotations

from typing import Any

import pytest
from prov_aws import REGION, ZONE, AwsCloud, AwsHarness
from prov_harness import (
    contract_pool,
    failed_scale_up,
    refused_permission,
    test_retrier,
    unique_name,
)

from dlscaler.pool import CapacityError, InvalidConfigError
from providers import build_provider
from providers.contract import Target


def test_template_takes_gpu_count_cpu_and_memory_from_the_instance_type(
    aws_harness: AwsHarness,
) -> None:
    # The pool says nothing about the GPU model: p4d.24xlarge's comes from EC2.
    aws_harness.pool = contract_pool("aws", region=REGION, gpuType="", gpusPerNode=4)
    t = aws_harness.group().node_template()
    assert t.instance_type == "p4d.24xlarge"
    assert (t.gpus_per_node, t.gpu_type, t.cpu, t.memory_mib) == (8, "a100", 96, 1179648)
    assert t.labels["node.kubernetes.io/instance-type"] == "p4d.24xlarge"
    assert t.labels["team"] == "research" and t.labels["dlscaler.io/pool"] == "contract-a100"


def test_template_reads_cluster_autoscaler_tags_and_spot_policy(aws_cloud: AwsCloud) -> None:
    name = unique_name("asg-spot")
    aws_cloud.admin["autoscaling"].create_auto_scaling_group(  # type: ignore[attr-defined]
        AutoScalingGroupName=name,
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateName": AwsCloud.LAUNCH_TEMPLATE},
                "Overrides": [{"InstanceType": "g5.xlarge"}],
            },
            "InstancesDistribution": {
                "OnDemandBaseCapacity": 0,
                "OnDemandPercentageAboveBaseCapacity": 0,
            },
        },
        MinSize=0,
        MaxSize=4,
        AvailabilityZones=[ZONE],
        Tags=[
            {
                "Key": "k8s.io/cluster-autoscaler/node-template/label/accelerator",
                "Value": "a10g",
                "PropagateAtLaunch": False,
            },
            {
                "Key": "k8s.io/cluster-autoscaler/node-template/taint/dedicated",
                "Value": "ml:NoSchedule",
                "PropagateAtLaunch": False,
            },
        ],
    )
    pool = contract_pool("aws", region=REGION, groupId=name, gpusPerNode=1, taints=[])
    t = aws_cloud.provider(pool, retrier=test_retrier()).node_template()
    assert (t.instance_type, t.gpus_per_node, t.gpu_type) == ("g5.xlarge", 1, "a100")
    assert t.labels["accelerator"] == "a10g"
    assert t.labels["dlscaler.io/capacity-type"] == "spot"
    assert t.taints == ("dedicated=ml:NoSchedule",)


@pytest.mark.parametrize(
    ("target", "action"),
    [
        ("read", "autoscaling:DescribeAutoScalingGroups"),
        ("scale", "autoscaling:SetDesiredCapacity"),
        ("delete", "autoscaling:TerminateInstanceInAutoScalingGroup"),
    ],
)
def test_permission_errors_name_the_iam_action(
    aws_harness: AwsHarness, target: Target, action: str
) -> None:
    assert refused_permission(aws_harness, target) == action


def test_stockout_is_read_from_the_failed_scaling_activity(aws_harness: AwsHarness) -> None:
    p, err = failed_scale_up(aws_harness, "stockout", start=1, to=3)
    assert err.code == "InsufficientInstanceCapacity"
    assert "p4d.24xlarge capacity" in err.message
    assert err.operation == "set_target_size"
    # What AWS accepted and could not launch was taken back.
    assert p.describe().target_size == 1
    # The next scale-up is judged by its own activity, not by the old failure.
    p.set_target_size(2)
    assert p.describe().target_size == 2


def test_vcpu_limit_is_a_quota_error(aws_harness: AwsHarness) -> None:
    _, err = failed_scale_up(aws_harness, "quota", start=0, to=1)
    assert "vCPU" in str(err)


def test_describe_reports_a_launch_failure_while_below_target(aws_cloud: AwsCloud) -> None:
    """AWS records a failed launch some time after accepting the target: describe shows it."""
    name = unique_name("asg-behind")
    aws_cloud.create_asg(name, min_size=0, max_size=6, desired=1)
    pool = contract_pool("aws", region=REGION, groupId=name)
    p = aws_cloud.provider(pool, retrier=test_retrier())
    assert p.describe().scale_up_error is None
    aws_cloud.proxy.fail_launches(name, desired=3, fault="stockout")
    desc = p.describe()
    assert desc.target_size == 3 and len(desc.instances) == 1
    assert isinstance(desc.scale_up_error, CapacityError)
    assert desc.scale_up_error.operation == "describe" and desc.scale_up_error.pool == pool.name
    # Taking the target back to what exists clears it.
    p.set_target_size(1)
    assert p.describe().scale_up_error is None


def test_delete_below_the_group_minimum_is_refused(aws_cloud: AwsCloud) -> None:
    name = unique_name("asg-min")
    aws_cloud.create_asg(name, min_size=2, max_size=6, desired=2)
    pool = contract_pool("aws", region=REGION, groupId=name, minNodes=2)
    p = aws_cloud.provider(pool, retrier=test_retrier())
    with pytest.raises(InvalidConfigError, match="minimum size 2"):
        p.delete_instances([p.describe().instances[0].provider_id])
    assert p.describe().target_size == 2


def _eks_nodegroup(aws_cloud: AwsCloud, **extra: Any) -> tuple[str, str]:
    eks = aws_cloud.admin["eks"]
    cluster = unique_name("cluster")
    eks.create_cluster(  # type: ignore[attr-defined]
        name=cluster,
        roleArn="arn:aws:iam::123456789012:role/eks",
        resourcesVpcConfig={"subnetIds": ["subnet-1"]},
    )
    nodegroup = unique_name("gpu")
    eks.create_nodegroup(  # type: ignore[attr-defined]
        clusterName=cluster,
        nodegroupName=nodegroup,
        nodeRole="arn:aws:iam::123456789012:role/node",
        subnets=["subnet-1"],
        scalingConfig={"minSize": 0, "maxSize": 5, "desiredSize": 1},
        instanceTypes=["p4d.24xlarge"],
        **extra,
    )
    return cluster, nodegroup


def test_eks_node_group_scales_through_its_scaling_config(aws_cloud: AwsCloud) -> None:
    cluster, nodegroup = _eks_nodegroup(
        aws_cloud,
        capacityType="SPOT",
        labels={"workload": "training"},
        taints=[{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}],
    )
    pool = contract_pool("aws", region=REGION, groupId=nodegroup, aws={"clusterName": cluster})
    p = aws_cloud.provider(pool, retrier=test_retrier())
    d = p.describe()
    assert (d.min_size, d.max_size, d.target_size) == (0, 5, 1)
    p.set_target_size(4)
    scaling = aws_cloud.admin["eks"].describe_nodegroup(  # type: ignore[attr-defined]
        clusterName=cluster, nodegroupName=nodegroup
    )["nodegroup"]["scalingConfig"]
    assert scaling == {"minSize": 0, "maxSize": 5, "desiredSize": 4}
    t = p.node_template()
    assert t.gpus_per_node == 8 and t.instance_type == "p4d.24xlarge"
    assert t.labels["eks.amazonaws.com/capacityType"] == "SPOT"
    assert t.labels["dlscaler.io/capacity-type"] == "spot"
    assert t.labels["workload"] == "training"
    assert "nvidia.com/gpu=true:NoSchedule" in t.taints


def test_eks_node_group_deletes_named_nodes_through_its_auto_scaling_group(
    aws_cloud: AwsCloud,
) -> None:
    cluster, nodegroup = _eks_nodegroup(aws_cloud)
    backing = aws_cloud.admin["eks"].describe_nodegroup(  # type: ignore[attr-defined]
        clusterName=cluster, nodegroupName=nodegroup
    )["nodegroup"]["resources"]["autoScalingGroups"][0]["name"]
    # moto does not launch a managed node group's instances; its ASG stands in for EKS's.
    aws_cloud.create_asg(backing, min_size=0, max_size=5, desired=3)
    pool = contract_pool("aws", region=REGION, groupId=nodegroup, aws={"clusterName": cluster})
    p = aws_cloud.provider(pool, retrier=test_retrier())
    ids = sorted(i.provider_id for i in p.describe().instances)
    assert len(ids) == 3 and all(pid.startswith(f"aws:///{ZONE}/i-") for pid in ids)
    aws_cloud.admin["eks"].update_nodegroup_config(  # type: ignore[attr-defined]
        clusterName=cluster, nodegroupName=nodegroup, scalingConfig={"desiredSize": 3}
    )
    p.delete_instances(ids[:1])
    assert sorted(i.provider_id for i in p.describe().instances) == ids[1:]


def test_eks_missing_node_group_names_the_cluster(aws_cloud: AwsCloud) -> None:
    cluster, _ = _eks_nodegroup(aws_cloud)
    pool = contract_pool("aws", region=REGION, groupId="no-such-ng", aws={"clusterName": cluster})
    with pytest.raises(
        InvalidConfigError, match=f"no EKS node group 'no-such-ng' in cluster '{cluster}'"
    ):
        aws_cloud.provider(pool, retrier=test_retrier()).describe()


def test_default_clients_come_from_the_credential_chain_without_calling_aws() -> None:
    """Building the provider resolves nothing yet: no network, no secrets read at import."""
    pool = contract_pool("aws", region=REGION, groupId="g", aws={"clusterName": "c"})
    provider = build_provider(pool)
    assert provider.group_id == "g"
