"""The per-cloud objects of a pool (``aws:``, ``gcp:``, ``azure:``, ``kwok:``), validated.

The pool file and the NodePool CRD keep these free-form so each cloud can say what it
needs; this module is where they are checked, with errors that name the pool and the field
(``pool 'a100': aws.clusterName: ...``), raised as :class:`InvalidConfigError` so they show
in the NodePool's status like any other permanent configuration error.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dlscaler.config import PoolModel
from dlscaler.pool import InvalidConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class AwsSettings(_Strict):
    """``aws:`` — an Auto Scaling group, or an EKS managed node group."""

    auto_scaling_group_name: str = Field("", alias="autoScalingGroupName", max_length=255)
    """The ASG to scale; defaults to ``groupId``. Not with ``clusterName``."""
    cluster_name: str = Field("", alias="clusterName", max_length=100)
    """With this set, the pool is an EKS managed node group of that cluster."""
    nodegroup_name: str = Field("", alias="nodegroupName", max_length=63)
    """The managed node group; defaults to ``groupId``."""

    @model_validator(mode="after")
    def _one_kind(self) -> AwsSettings:
        if self.cluster_name and self.auto_scaling_group_name:
            raise ValueError(
                "set either autoScalingGroupName (an Auto Scaling group) or "
                "clusterName + nodegroupName (an EKS managed node group), not both"
            )
        if self.nodegroup_name and not self.cluster_name:
            raise ValueError("nodegroupName needs clusterName (the EKS cluster it belongs to)")
        return self


class GcpSettings(_Strict):
    """``gcp:`` — the project of a zonal (pool ``zone``) or regional (pool ``region``) MIG."""

    project: str = Field(pattern=r"^[a-z][-a-z0-9:.]{4,61}[a-z0-9]$")
    operation_timeout_s: float = Field(600.0, alias="operationTimeoutSeconds", gt=0, le=3600)
    """How long to wait for a resize or delete operation to finish."""
    request_timeout_s: float = Field(60.0, alias="requestTimeoutSeconds", gt=0, le=600)
    """How long one HTTP request may take before it counts as failed (and is retried)."""


class AzureSettings(_Strict):
    """``azure:`` — where the virtual machine scale set (``groupId``) lives."""

    subscription_id: str = Field(
        alias="subscriptionId",
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    )
    resource_group: str = Field(alias="resourceGroup", min_length=1, max_length=90)
    operation_timeout_s: float = Field(900.0, alias="operationTimeoutSeconds", gt=0, le=3600)
    """How long to wait for a capacity update or instance delete to finish."""
    request_timeout_s: float = Field(60.0, alias="requestTimeoutSeconds", gt=0, le=600)
    """How long one HTTP request may take before it counts as failed (and is retried)."""


class KwokSettings(_Strict):
    """``kwok:`` — fake GPU nodes in a real cluster."""

    available_nodes: int | None = Field(None, alias="availableNodes", ge=0)
    """Simulated stockout: at most this many nodes of the pool can exist; a scale-up past it
    raises CapacityError (to exercise the policy's next-pool fallback end to end)."""
    node_name_prefix: str = Field(
        "", alias="nodeNamePrefix", pattern=r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40
    )
    """Defaults to ``kwok-<pool>-``."""


class FakeSettings(_Strict):
    """Pools with ``provider: fake`` take no per-cloud object."""


M = TypeVar("M", bound=_Strict)

_PATTERN_HINTS = {
    "project": "a GCP project id (6 to 30 lowercase letters, digits and hyphens)",
    "subscriptionId": "an Azure subscription id (a GUID: 00000000-0000-0000-0000-000000000000)",
    "nodeNamePrefix": "a DNS label prefix (lowercase letters, digits and hyphens)",
}


def parse_settings(pool: PoolModel, cloud: str, model: type[M]) -> M:
    """Validate ``pool.<cloud>``; errors name the pool and the field and say what to do."""
    data: dict[str, Any] = getattr(pool, cloud, {}) if cloud != "fake" else {}
    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            field = f"{cloud}.{loc}" if loc else cloud
            msg = e["msg"]
            if e["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling)"
            elif e["type"] == "string_pattern_mismatch":
                hint = _PATTERN_HINTS.get(str(e["loc"][-1]), "in the expected format")
                msg = f"{e.get('input')!r} is not {hint}"
            lines.append(f"{field}: {msg}")
        raise InvalidConfigError(
            "; ".join(lines), pool=pool.name, operation="configure", code="InvalidPoolSpec"
        ) from None


def require(pool: PoolModel, field: str, value: str, why: str) -> str:
    if not value:
        raise InvalidConfigError(
            f"{field} is required for provider {pool.provider}: {why}",
            pool=pool.name,
            operation="configure",
            code="InvalidPoolSpec",
        )
    return value
