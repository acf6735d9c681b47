"""The contract every cloud adapter implements, and the errors it may raise.

In the spirit of cluster-autoscaler's NodeGroup: one narrow interface per node group, so
the scaling logic never asks which cloud it is talking to. Adapters (``providers/``)
map each vendor's exceptions into :class:`ProviderError` subclasses exactly once, at the
edge; nothing above them knows boto3, google-api-core or azure-core exist.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable


class InstanceState(enum.Enum):
    PENDING = "pending"
    """Requested or booting: not yet a usable node."""
    RUNNING = "running"
    DELETING = "deleting"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Instance:
    """One machine in a node group, as the cloud sees it."""

    provider_id: str
    """The Kubernetes ``spec.providerID`` of the node this instance becomes
    (``aws:///us-east-1a/i-0abc``, ``gce://project/zone/name``, ``azure:///subscriptions/...``,
    ``kwok://pool/name``)."""
    state: InstanceState
    name: str = ""
    error: str = ""
    """Why the cloud could not create this instance (``FAILED`` or stuck ``PENDING``), in the
    cloud's words; empty when nothing went wrong."""


@dataclass(frozen=True, slots=True)
class NodeTemplate:
    """What a node of the group looks like, so a group at zero can still be chosen."""

    instance_type: str
    gpu_type: str
    gpus_per_node: int
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    taints: tuple[str, ...] = ()
    cpu: int = 0
    memory_mib: int = 0


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group_id: str
    min_size: int
    max_size: int
    target_size: int
    instances: tuple[Instance, ...]
    scale_up_error: ProviderError | None = None
    """Why the group is below its target, when the cloud has said so after accepting the
    target (a stockout or quota failure found in scaling activities or instance errors);
    ``None`` when the group is at its target or still on its way there."""


@runtime_checkable
class NodePoolProvider(Protocol):
    """One node group of one cloud.

    Calls are blocking (the controller runs them in threads) and idempotent: asking for the
    current target again, or deleting an instance that is already gone, succeeds.
    """

    @property
    def group_id(self) -> str: ...

    def describe(self) -> GroupDescription: ...

    def set_target_size(self, size: int) -> None:
        """Grow (or shrink, by letting the cloud pick) the group to ``size`` instances."""

    def delete_instances(self, provider_ids: Sequence[str]) -> None:
        """Remove exactly these instances and lower the target by as many."""

    def node_template(self) -> NodeTemplate: ...


class ErrorKind(enum.Enum):
    CAPACITY = "capacity"
    """The cloud has no such machines right now (stockout): try another pool."""
    QUOTA = "quota"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    NOT_FOUND = "not-found"
    PERMISSION = "permission"
    INVALID_CONFIG = "invalid-config"

    @property
    def retryable(self) -> bool:
        """Worth retrying the same call soon (with backoff)."""
        return self in (ErrorKind.THROTTLED, ErrorKind.TRANSIENT)

    @property
    def permanent(self) -> bool:
        """Needs a person: shown in the NodePool's status until fixed."""
        return self in (ErrorKind.PERMISSION, ErrorKind.INVALID_CONFIG)


class ProviderError(Exception):
    """A cloud call failed; ``kind`` says what the caller should do about it."""

    kind: ErrorKind = ErrorKind.TRANSIENT

    def __init__(
        self,
        message: str,
        *,
        pool: str = "",
        operation: str = "",
        code: str = "",
        permission: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.pool = pool
        self.operation = operation
        self.code = code
        """The cloud's own error code (``InsufficientInstanceCapacity``, ``AllocationFailed``)."""
        self.permission = permission
        """For permission errors: the permission the caller lacks
        (``autoscaling:SetDesiredCapacity``, ``compute.instanceGroupManagers.update``,
        ``Microsoft.Compute/virtualMachineScaleSets/write``)."""
        self.retry_after_s = retry_after_s
        """For throttling: how long the cloud asked us to wait, if it said."""

    def __str__(self) -> str:
        where = " ".join(p for p in (self.pool, self.operation) if p)
        text = f"{self.kind.value}: {where + ': ' if where else ''}{self.message}"
        if self.permission and self.permission not in self.message:
            text += f" (missing permission: {self.permission})"
        return text


class CapacityError(ProviderError):
    kind = ErrorKind.CAPACITY


class QuotaError(ProviderError):
    kind = ErrorKind.QUOTA


class ThrottledError(ProviderError):
    kind = ErrorKind.THROTTLED


class TransientError(ProviderError):
    kind = ErrorKind.TRANSIENT


class NotFoundError(ProviderError):
    kind = ErrorKind.NOT_FOUND


class PermissionDeniedError(ProviderError):
    kind = ErrorKind.PERMISSION


class InvalidConfigError(ProviderError):
    kind = ErrorKind.INVALID_CONFIG


ERROR_TYPES: Mapping[ErrorKind, type[ProviderError]] = MappingProxyType(
    {
        cls.kind: cls
        for cls in (
            CapacityError,
            QuotaError,
            ThrottledError,
            TransientError,
            NotFoundError,
            PermissionDeniedError,
            InvalidConfigError,
        )
    }
)
