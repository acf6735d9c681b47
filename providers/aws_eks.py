"""AWS EKS managed node groups, through boto3.

Scaled with ``UpdateNodegroupConfig`` (``scalingConfig.desiredSize``); the policy's chosen
instances are terminated through the node group's own Auto Scaling group (with
``ShouldDecrementDesiredCapacity``), as cluster-autoscaler does. Bounds are the node
group's ``scalingConfig``; launch failures are read from its health issues. Built by
:func:`providers.aws.from_pool` when the pool has ``aws.clusterName``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dlscaler.config import PoolModel
from dlscaler.pool import (
    GroupDescription,
    Instance,
    InvalidConfigError,
    NodeTemplate,
    NotFoundError,
    ProviderError,
)
from providers.aws import Asg
from providers.aws_errors import classify_launch_failure
from providers.base import check_target, live, with_scale_up_error
from providers.retry import Retrier
from providers.template import CAPACITY_TYPE_LABEL

_EKS_TAINT_EFFECTS = {
    "NO_SCHEDULE": "NoSchedule",
    "NO_EXECUTE": "NoExecute",
    "PREFER_NO_SCHEDULE": "PreferNoSchedule",
}


class NodegroupProvider:
    """One EKS managed node group."""

    def __init__(self, pool: PoolModel, cluster: str, nodegroup: str, eks: Any, asg: Asg) -> None:
        self._pool = pool
        self._cluster = cluster
        self._nodegroup = nodegroup
        self._eks = eks
        self._asg = asg
        self._template: NodeTemplate | None = None

    @property
    def group_id(self) -> str:
        return self._nodegroup

    @property
    def retrier(self) -> Retrier:
        return self._asg.call.retrier

    def _describe_nodegroup(self, *, once: bool = False) -> dict[str, Any]:
        run = self._asg.call.once if once else self._asg.call
        try:
            response = run(
                "DescribeNodegroup",
                lambda: self._eks.describe_nodegroup(
                    clusterName=self._cluster, nodegroupName=self._nodegroup
                ),
                permission="eks:DescribeNodegroup",
            )
        except NotFoundError as err:
            raise InvalidConfigError(
                f"no EKS node group {self._nodegroup!r} in cluster {self._cluster!r} "
                f"({self._pool.region}): check aws.clusterName and the pool's groupId "
                f"(or aws.nodegroupName); AWS said: {err.message}",
                pool=self._pool.name,
                operation="describe",
                code=err.code,
            ) from err
        return dict(response["nodegroup"])

    def _asg_names(self, nodegroup: Mapping[str, Any]) -> list[str]:
        return [g["name"] for g in nodegroup.get("resources", {}).get("autoScalingGroups", [])]

    def _instances(
        self, nodegroup: Mapping[str, Any], *, once: bool = False
    ) -> tuple[Instance, ...]:
        names = self._asg_names(nodegroup)
        return self._asg.instances(self._asg.groups(names, once=once)) if names else ()

    def describe(self) -> GroupDescription:
        ng = self._describe_nodegroup()
        scaling = ng.get("scalingConfig", {})
        desc = GroupDescription(
            group_id=self._nodegroup,
            min_size=int(scaling.get("minSize", 0)),
            max_size=int(scaling.get("maxSize", 0)),
            target_size=int(scaling.get("desiredSize", 0)),
            instances=self._instances(ng),
        )
        if len(live(desc.instances)) < desc.target_size:
            return with_scale_up_error(desc, _launch_failure(ng), pool=self._pool.name)
        return desc

    def set_target_size(self, size: int) -> None:
        desc = self.describe()
        check_target(size, desc, pool=self._pool.name, bounds_from="the node group's scalingConfig")
        if size == desc.target_size:
            return
        self._asg.call(
            "UpdateNodegroupConfig",
            lambda: self._eks.update_nodegroup_config(
                clusterName=self._cluster,
                nodegroupName=self._nodegroup,
                scalingConfig={"desiredSize": size},
            ),
            permission="eks:UpdateNodegroupConfig",
        )

    def delete_instances(self, provider_ids: Sequence[str]) -> None:
        def present() -> dict[str, Instance]:
            ng = self._describe_nodegroup(once=True)
            return {i.provider_id: i for i in self._instances(ng, once=True)}

        self._asg.delete_named(
            provider_ids, pool=self._pool.name, describe=self.describe, present=present
        )

    def node_template(self) -> NodeTemplate:
        if self._template is None:
            ng = self._describe_nodegroup()
            types = ng.get("instanceTypes") or [self._pool.instance_type]
            capacity = str(ng.get("capacityType", "ON_DEMAND"))
            labels = {
                **{str(k): str(v) for k, v in (ng.get("labels") or {}).items()},
                "eks.amazonaws.com/nodegroup": self._nodegroup,
                "eks.amazonaws.com/capacityType": capacity,
            }
            labels[CAPACITY_TYPE_LABEL] = "spot" if capacity == "SPOT" else "on-demand"
            taints = [_eks_taint(t) for t in ng.get("taints") or []]
            self._template = self._asg.node_template(
                self._pool, str(types[0] or ""), labels=labels, taints=taints
            )
        return self._template


def _launch_failure(nodegroup: Mapping[str, Any]) -> ProviderError | None:
    """The stockout or quota among the node group's health issues, if there is one."""
    for issue in nodegroup.get("health", {}).get("issues", []):
        error = classify_launch_failure(f"{issue.get('code', '')}: {issue.get('message', '')}")
        if error is not None:
            return error
    return None


def _eks_taint(taint: Mapping[str, Any]) -> str:
    effect = _EKS_TAINT_EFFECTS.get(str(taint.get("effect", "")), "NoSchedule")
    return f"{taint['key']}={taint.get('value', '')}:{effect}"
