"""AWS node pools through boto3: Auto Scaling groups and EKS managed node groups.

An ASG is scaled with ``SetDesiredCapacity`` and shrunk by naming the instance
(``TerminateInstanceInAutoScalingGroup`` with ``ShouldDecrementDesiredCapacity``), so the
idle node the policy chose is the one that goes. EKS managed node groups are in
:mod:`providers.aws_eks`; they share the Auto Scaling calls here (:class:`Asg`).

Stockouts and quota failures arrive after the target was accepted, in the ASG's scaling
activities (or the node group's health issues): they are reported as
``GroupDescription.scale_up_error``, and a scale-up that already sees its launch fail
lowers the target back and raises :class:`~dlscaler.pool.CapacityError`.

Credentials come from boto3's default chain (IRSA web identity, EKS Pod Identity, instance
profile); botocore's own retries are off, the adapter's :class:`~providers.retry.Retrier`
is the one retry layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dlscaler.config import PoolModel
from dlscaler.pool import (
    GroupDescription,
    Instance,
    InstanceState,
    InvalidConfigError,
    NodePoolProvider,
    NodeTemplate,
    ProviderError,
)
from providers.aws_errors import classify_launch_failure, map_aws_error
from providers.base import (
    CloudCall,
    check_delete,
    check_target,
    delete_until_gone,
    live,
    parse_provider_id,
    with_scale_up_error,
)
from providers.retry import Retrier
from providers.settings import AwsSettings, parse_settings, require
from providers.template import CAPACITY_TYPE_LABEL, build_template

SCHEME = "aws"
ASG_TEMPLATE_LABEL_TAG = "k8s.io/cluster-autoscaler/node-template/label/"
ASG_TEMPLATE_TAINT_TAG = "k8s.io/cluster-autoscaler/node-template/taint/"

_STATES = {
    "Pending": InstanceState.PENDING,
    "Pending:Wait": InstanceState.PENDING,
    "Pending:Proceed": InstanceState.PENDING,
    "InService": InstanceState.RUNNING,
    "Standby": InstanceState.RUNNING,
    "EnteringStandby": InstanceState.RUNNING,
}


def provider_id(instance: Mapping[str, Any]) -> str:
    """The node's ``spec.providerID``, as the AWS cloud provider writes it."""
    return f"aws:///{instance.get('AvailabilityZone', '')}/{instance['InstanceId']}"


def instance_id(pid: str, *, pool: str) -> str:
    return parse_provider_id(pid, SCHEME, pool=pool).rsplit("/", 1)[-1]


class Asg:
    """The Auto Scaling calls both pool kinds make, mapped and retried."""

    def __init__(self, autoscaling: Any, ec2: Any, call: CloudCall) -> None:
        self.autoscaling = autoscaling
        self.ec2 = ec2
        self.call = call

    def groups(self, names: Sequence[str], *, once: bool = False) -> list[dict[str, Any]]:
        run = self.call.once if once else self.call
        groups: list[dict[str, Any]] = []
        for page in run(
            "DescribeAutoScalingGroups",
            lambda: list(
                self.autoscaling.get_paginator("describe_auto_scaling_groups").paginate(
                    AutoScalingGroupNames=list(names)
                )
            ),
            permission="autoscaling:DescribeAutoScalingGroups",
        ):
            groups.extend(page.get("AutoScalingGroups", []))
        return groups

    @staticmethod
    def instances(groups: Sequence[Mapping[str, Any]]) -> tuple[Instance, ...]:
        found = [
            Instance(
                provider_id=provider_id(i),
                state=_STATES.get(i.get("LifecycleState", ""), InstanceState.DELETING),
                name=i["InstanceId"],
            )
            for g in groups
            for i in g.get("Instances", [])
        ]
        return tuple(sorted(found, key=lambda i: i.provider_id))

    def launch_activities(self, name: str) -> list[dict[str, Any]]:
        response = self.call(
            "DescribeScalingActivities",
            lambda: self.autoscaling.describe_scaling_activities(
                AutoScalingGroupName=name, MaxRecords=20
            ),
            permission="autoscaling:DescribeScalingActivities",
        )
        # Newest first, as AWS returns them.
        return [
            a
            for a in response.get("Activities", [])
            if str(a.get("Description", "")).startswith("Launching")
        ]

    def launch_failure(
        self, name: str, *, ignore: frozenset[str] = frozenset()
    ) -> ProviderError | None:
        """The stockout or quota behind the newest launch activity, if that one failed."""
        for activity in self.launch_activities(name):
            if activity.get("ActivityId") in ignore:
                return None
            if activity.get("StatusCode") not in ("Failed", "Cancelled"):
                return None
            text = f"{activity.get('StatusMessage', '')} {activity.get('Description', '')}"
            return classify_launch_failure(text.strip())
        return None

    def delete_named(
        self,
        provider_ids: Sequence[str],
        *,
        pool: str,
        describe: Callable[[], GroupDescription],
        present: Callable[[], dict[str, Instance]],
    ) -> None:
        """Terminates the named instances one at a time (lowering the desired capacity by as
        many) until none is left: ``describe`` checks them against the group first,
        ``present`` re-lists what is still there each round."""
        ids = list(provider_ids)
        for pid in ids:
            instance_id(pid, pool=pool)
        if not ids:
            return
        check_delete(describe(), ids, pool=pool)
        delete_until_gone(
            ids,
            list_instances=present,
            delete=lambda batch: self.terminate(batch[0], pool=pool),
            retrier=self.call.retrier,
            pool=pool,
            batch_size=1,
        )

    def terminate(self, pid: str, *, pool: str) -> None:
        iid = instance_id(pid, pool=pool)
        self.call.once(
            "TerminateInstanceInAutoScalingGroup",
            lambda: self.autoscaling.terminate_instance_in_auto_scaling_group(
                InstanceId=iid, ShouldDecrementDesiredCapacity=True
            ),
            permission="autoscaling:TerminateInstanceInAutoScalingGroup",
        )

    def node_template(
        self, pool: PoolModel, instance_type: str, *, labels: dict[str, str], taints: list[str]
    ) -> NodeTemplate:
        """The pool's template for nodes of ``instance_type`` (GPUs, vCPUs and memory as EC2
        lists them), with the group's own ``labels`` and ``taints``."""
        facts = self.gpu_facts(instance_type) if instance_type else {}
        return build_template(
            pool,
            instance_type=instance_type,
            extra_labels=labels,
            extra_taints=taints,
            **facts,
        )

    def gpu_facts(self, instance_type: str) -> dict[str, Any]:
        """GPU count and model, vCPUs and memory of an EC2 instance type."""
        response = self.call(
            "DescribeInstanceTypes",
            lambda: self.ec2.describe_instance_types(InstanceTypes=[instance_type]),
            permission="ec2:DescribeInstanceTypes",
        )
        types = response.get("InstanceTypes", [])
        if not types:
            return {}
        t = types[0]
        gpus = t.get("GpuInfo", {}).get("Gpus", [])
        return {
            "gpus_per_node": sum(int(g.get("Count", 0)) for g in gpus),
            "gpu_type": str(gpus[0].get("Name", "")).lower() if gpus else "",
            "cpu": int(t.get("VCpuInfo", {}).get("DefaultVCpus", 0)),
            "memory_mib": int(t.get("MemoryInfo", {}).get("SizeInMiB", 0)),
        }


class AutoScalingGroupProvider:
    """One EC2 Auto Scaling group."""

    def __init__(self, pool: PoolModel, name: str, asg: Asg) -> None:
        self._pool = pool
        self._name = name
        self._asg = asg
        self._template: NodeTemplate | None = None

    @property
    def group_id(self) -> str:
        return self._name

    @property
    def retrier(self) -> Retrier:
        return self._asg.call.retrier

    def _group(self, *, once: bool = False) -> dict[str, Any]:
        groups = self._asg.groups([self._name], once=once)
        if not groups:
            raise InvalidConfigError(
                f"no Auto Scaling group named {self._name!r} in {self._pool.region}: check the "
                "pool's groupId (or aws.autoScalingGroupName) and region",
                pool=self._pool.name,
                operation="describe",
                code="AutoScalingGroupNotFound",
            )
        return groups[0]

    def _description(
        self, group: Mapping[str, Any], instances: tuple[Instance, ...]
    ) -> GroupDescription:
        return GroupDescription(
            group_id=self._name,
            min_size=int(group["MinSize"]),
            max_size=int(group["MaxSize"]),
            target_size=int(group["DesiredCapacity"]),
            instances=instances,
        )

    def describe(self) -> GroupDescription:
        group = self._group()
        desc = self._description(group, self._asg.instances([group]))
        if len(live(desc.instances)) < desc.target_size:
            failure = self._asg.launch_failure(self._name)
            return with_scale_up_error(desc, failure, pool=self._pool.name)
        return desc

    def set_target_size(self, size: int) -> None:
        group = self._group()
        desc = self._description(group, self._asg.instances([group]))
        check_target(size, desc, pool=self._pool.name, bounds_from="the Auto Scaling group's")
        if size == desc.target_size:
            return
        growing = size > desc.target_size
        seen = (
            frozenset(a.get("ActivityId", "") for a in self._asg.launch_activities(self._name))
            if growing
            else frozenset()
        )
        self._set_desired(size)
        if growing:
            failure = self._asg.launch_failure(self._name, ignore=seen)
            if failure is not None:
                self._take_back(desc.target_size, failure)
                raise failure

    def _set_desired(self, size: int) -> None:
        self._asg.call(
            "SetDesiredCapacity",
            lambda: self._asg.autoscaling.set_desired_capacity(
                AutoScalingGroupName=self._name, DesiredCapacity=size, HonorCooldown=False
            ),
            permission="autoscaling:SetDesiredCapacity",
        )

    def _take_back(self, previous: int, failure: ProviderError) -> None:
        """Lower the target to what exists, so the group does not launch later on its own."""
        failure.pool, failure.operation = self._pool.name, "set_target_size"
        try:
            group = self._group()
            keep = max(previous, len(live(self._asg.instances([group]))))
            if keep < int(group["DesiredCapacity"]):
                self._set_desired(keep)
        except ProviderError as err:
            failure.message += f" (lowering the target back failed too: {err.message})"

    def delete_instances(self, provider_ids: Sequence[str]) -> None:
        def present() -> dict[str, Instance]:
            return {i.provider_id: i for i in self._asg.instances([self._group(once=True)])}

        self._asg.delete_named(
            provider_ids, pool=self._pool.name, describe=self.describe, present=present
        )

    def node_template(self) -> NodeTemplate:
        if self._template is None:
            group = self._group()
            labels, taints = _tag_template(group.get("Tags", []))
            spot = _is_spot(group)
            if spot is not None:
                labels.setdefault(CAPACITY_TYPE_LABEL, "spot" if spot else "on-demand")
            self._template = self._asg.node_template(
                self._pool, self._instance_type(group), labels=labels, taints=taints
            )
        return self._template

    def _instance_type(self, group: Mapping[str, Any]) -> str:
        """What the group launches: a running instance's type, else its launch template's."""
        for inst in group.get("Instances", []):
            if inst.get("InstanceType"):
                return str(inst["InstanceType"])
        mixed = group.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {})
        for override in mixed.get("Overrides", []):
            if override.get("InstanceType"):
                return str(override["InstanceType"])
        spec = group.get("LaunchTemplate") or mixed.get("LaunchTemplateSpecification")
        if spec:
            key = (
                {"LaunchTemplateId": spec["LaunchTemplateId"]}
                if spec.get("LaunchTemplateId")
                else {"LaunchTemplateName": spec["LaunchTemplateName"]}
            )
            versions = self._asg.call(
                "DescribeLaunchTemplateVersions",
                lambda: self._asg.ec2.describe_launch_template_versions(
                    **key, Versions=[str(spec.get("Version") or "$Default")]
                ),
                permission="ec2:DescribeLaunchTemplateVersions",
            ).get("LaunchTemplateVersions", [])
            if versions and versions[0].get("LaunchTemplateData", {}).get("InstanceType"):
                return str(versions[0]["LaunchTemplateData"]["InstanceType"])
        return self._pool.instance_type


def _tag_template(tags: Sequence[Mapping[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """Labels and taints declared on the ASG the way cluster-autoscaler reads them."""
    labels: dict[str, str] = {}
    taints: list[str] = []
    for tag in tags:
        key, value = str(tag.get("Key", "")), str(tag.get("Value", ""))
        if key.startswith(ASG_TEMPLATE_LABEL_TAG):
            labels[key.removeprefix(ASG_TEMPLATE_LABEL_TAG)] = value
        elif key.startswith(ASG_TEMPLATE_TAINT_TAG):
            taints.append(f"{key.removeprefix(ASG_TEMPLATE_TAINT_TAG)}={value}")
    return labels, taints


def _is_spot(group: Mapping[str, Any]) -> bool | None:
    """Spot or on-demand, as the group's mixed instances policy says; None when it has
    none (the launch template decides, and the pool file's ``spot`` is taken as said)."""
    dist = group.get("MixedInstancesPolicy", {}).get("InstancesDistribution")
    if not dist:
        return None
    return (
        int(dist.get("OnDemandBaseCapacity", 0)) == 0
        and int(dist.get("OnDemandPercentageAboveBaseCapacity", 100)) == 0
    )


def from_pool(
    pool: PoolModel,
    *,
    retrier: Retrier,
    session: Any = None,
    autoscaling: Any = None,
    ec2: Any = None,
    eks: Any = None,
) -> NodePoolProvider:
    """The ASG or EKS node group provider for ``pool``; clients not given are made from
    ``session`` (default: boto3's default credential chain in the pool's region)."""
    settings = parse_settings(pool, "aws", AwsSettings)
    region = require(pool, "region", pool.region, "the AWS region of the group (us-east-1)")
    if None in (autoscaling, ec2) or (settings.cluster_name and eks is None):
        import boto3
        from botocore.config import Config

        # One retry layer (ours), bounded timeouts so a hung call cannot stall a loop.
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            user_agent_extra="dlscaler",
        )
        session = session or boto3.session.Session(region_name=region)
        autoscaling = autoscaling or session.client(
            "autoscaling", region_name=region, config=config
        )
        ec2 = ec2 or session.client("ec2", region_name=region, config=config)
        if settings.cluster_name:
            eks = eks or session.client("eks", region_name=region, config=config)
    asg = Asg(autoscaling, ec2, CloudCall(pool=pool.name, retrier=retrier, map_error=map_aws_error))
    if settings.cluster_name:
        nodegroup = settings.nodegroup_name or require(
            pool,
            "groupId",
            pool.group_id,
            "the EKS managed node group's name (or aws.nodegroupName)",
        )
        from providers.aws_eks import NodegroupProvider

        return NodegroupProvider(pool, settings.cluster_name, nodegroup, eks, asg)
    name = settings.auto_scaling_group_name or require(
        pool,
        "groupId",
        pool.group_id,
        "the Auto Scaling group's name (or aws.autoScalingGroupName)",
    )
    return AutoScalingGroupProvider(pool, name, asg)
