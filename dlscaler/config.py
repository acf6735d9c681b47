"""Policy configuration and pool files: parsed at the boundary into frozen types.

Input arrives as already-loaded YAML/JSON (a mapping); reading the file is the caller's job
(the CLI, the controller), so the core stays free of I/O. Every error names the source,
the field path and, for enums, the allowed values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dlscaler.model import ANY_GPU_TYPE, PoolSpec

QueueOrdering = Literal["fifo", "priority", "fair-share", "greedy"]
Expander = Literal["cheapest", "least-waste", "priority"]
PolicyName = Literal["static-peak", "reactive", "predictive", "oracle"]

POLICY_NAMES: tuple[str, ...] = ("static-peak", "reactive", "predictive", "oracle")
QUEUE_ORDERINGS: tuple[str, ...] = ("fifo", "priority", "fair-share", "greedy")
EXPANDERS: tuple[str, ...] = ("cheapest", "least-waste", "priority")


class ConfigError(ValueError):
    """Invalid configuration; the message names the source and the field."""


@dataclass(frozen=True, slots=True)
class PredictiveParams:
    quantile: float = 0.9
    """Which forecast quantile to provision for over the lead time."""
    lead_time_factor: float = 1.0
    """Look ahead this many provisioning delays."""
    headroom_gpus: float = 0.0
    scale_down_quantile: float = 0.5
    """Keep idle nodes while this quantile of demand (over the idle timeout) still needs them."""
    max_error_ratio: float = 1.5
    """Fall back to reactive when the forecast's recent error exceeds this multiple of the
    naive baseline's."""
    hysteresis_nodes: int = 1
    """Grow for the forecast only when it asks for more than this many extra nodes."""
    arrival_quantile: float = 0.85
    """Keep room for the arrivals of this share of past lead-time windows, in their gang
    shapes (:mod:`dlscaler.policy.scenarios`); 0 turns it off."""
    arrival_budget: float = 0.01
    """Room for rarer bursts (up to the windows of one in a hundred) as long as it takes
    no more than this share of the pools' nodes: large clusters afford it, small ones do
    not. 0: only ``arrival_quantile``."""
    consolidate_within_s: float = 0.0
    """Cordon a busy node, so it empties and goes, when capacity exceeds the forecast by a
    node and all its gangs are expected to finish within this many seconds
    (:mod:`dlscaler.policy.consolidation`); 0 turns it off."""


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    policy: str = "reactive"
    idle_timeout_s: float = 600.0
    queue_ordering: str = "fifo"
    expander: str = "cheapest"
    fair_share_weights: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    pool_priorities: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """For the ``priority`` expander: higher is preferred."""
    static_nodes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """For ``static-peak``: nodes per pool. A pool not listed gets the trace's peak (the
    simulator fills this in) or its max."""
    max_scale_up_nodes: int = 1000
    """At most this many nodes asked for in one decision, per pool (a safety valve)."""
    decision_interval_s: float = 60.0
    predictive: PredictiveParams = field(default_factory=PredictiveParams)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class _PredictiveModel(_Strict):
    quantile: float = Field(0.9, gt=0, lt=1)
    lead_time_factor: float = Field(1.0, alias="leadTimeFactor", ge=0, le=20)
    headroom_gpus: float = Field(0.0, alias="headroomGpus", ge=0)
    scale_down_quantile: float = Field(0.5, alias="scaleDownQuantile", gt=0, lt=1)
    max_error_ratio: float = Field(1.5, alias="maxErrorRatio", gt=0)
    hysteresis_nodes: int = Field(1, alias="hysteresisNodes", ge=0)
    arrival_quantile: float = Field(0.85, alias="arrivalQuantile", ge=0, lt=1)
    arrival_budget: float = Field(0.01, alias="arrivalBudget", ge=0, le=1)
    consolidate_within_s: float = Field(0.0, alias="consolidateWithinSeconds", ge=0)


class _PolicyModel(_Strict):
    policy: PolicyName = "reactive"
    idle_timeout_s: float = Field(600.0, alias="idleTimeoutSeconds", ge=0)
    queue_ordering: QueueOrdering = Field("fifo", alias="queueOrdering")
    expander: Expander = "cheapest"
    fair_share_weights: dict[str, float] = Field(default_factory=dict, alias="fairShareWeights")
    pool_priorities: dict[str, int] = Field(default_factory=dict, alias="poolPriorities")
    static_nodes: dict[str, int] = Field(default_factory=dict, alias="staticNodes")
    max_scale_up_nodes: int = Field(1000, alias="maxScaleUpNodes", ge=1)
    decision_interval_s: float = Field(60.0, alias="decisionIntervalSeconds", gt=0)
    predictive: _PredictiveModel = Field(default_factory=_PredictiveModel)

    @model_validator(mode="after")
    def _weights_positive(self) -> _PolicyModel:
        for queue, weight in self.fair_share_weights.items():
            if weight <= 0:
                raise ValueError(f"fairShareWeights.{queue} must be > 0, got {weight}")
        return self


def _format_errors(source: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "literal_error":
            msg = f"{msg} (got {e.get('input')!r})"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def parse_policy_config(data: Mapping[str, Any] | None, *, source: str = "config") -> PolicyConfig:
    """Validate a policy configuration mapping (the YAML ``dlscaler tune`` writes).

    A Helm values file is accepted as it is (its ``policyConfig:`` section is read), and so
    is the mapping wrapped in a lone ``dlscaler:`` key.
    """
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: expected a mapping of policy settings, got {type(data).__name__}"
        )
    data = dict(data or {})
    if isinstance(data.get("policyConfig"), Mapping):
        data = dict(data["policyConfig"])  # a Helm values file: its policy section
    elif set(data) == {"dlscaler"} and isinstance(data["dlscaler"], Mapping):
        data = dict(data["dlscaler"])
    try:
        m = _PolicyModel.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err)) from None
    p = m.predictive
    return PolicyConfig(
        policy=m.policy,
        idle_timeout_s=m.idle_timeout_s,
        queue_ordering=m.queue_ordering,
        expander=m.expander,
        fair_share_weights=MappingProxyType(dict(m.fair_share_weights)),
        pool_priorities=MappingProxyType(dict(m.pool_priorities)),
        static_nodes=MappingProxyType(dict(m.static_nodes)),
        max_scale_up_nodes=m.max_scale_up_nodes,
        decision_interval_s=m.decision_interval_s,
        predictive=PredictiveParams(
            quantile=p.quantile,
            lead_time_factor=p.lead_time_factor,
            headroom_gpus=p.headroom_gpus,
            scale_down_quantile=p.scale_down_quantile,
            max_error_ratio=p.max_error_ratio,
            hysteresis_nodes=p.hysteresis_nodes,
            arrival_quantile=p.arrival_quantile,
            arrival_budget=p.arrival_budget,
            consolidate_within_s=p.consolidate_within_s,
        ),
    )


def policy_config_to_dict(cfg: PolicyConfig) -> dict[str, Any]:
    """The YAML-ready form of a config; ``parse_policy_config`` reads it back unchanged."""
    p = cfg.predictive
    return {
        "policy": cfg.policy,
        "idleTimeoutSeconds": cfg.idle_timeout_s,
        "queueOrdering": cfg.queue_ordering,
        "expander": cfg.expander,
        "fairShareWeights": dict(cfg.fair_share_weights),
        "poolPriorities": dict(cfg.pool_priorities),
        "staticNodes": dict(cfg.static_nodes),
        "maxScaleUpNodes": cfg.max_scale_up_nodes,
        "decisionIntervalSeconds": cfg.decision_interval_s,
        "predictive": {
            "quantile": p.quantile,
            "leadTimeFactor": p.lead_time_factor,
            "headroomGpus": p.headroom_gpus,
            "scaleDownQuantile": p.scale_down_quantile,
            "maxErrorRatio": p.max_error_ratio,
            "hysteresisNodes": p.hysteresis_nodes,
            "arrivalQuantile": p.arrival_quantile,
            "arrivalBudget": p.arrival_budget,
            "consolidateWithinSeconds": p.consolidate_within_s,
        },
    }


# --- pools --------------------------------------------------------------------------------

ProviderName = Literal["aws", "gcp", "azure", "kwok", "fake"]
GPU_TYPE_PATTERN = r"^$|^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class _SimulationModel(_Strict):
    delay_distribution: Literal["fixed", "uniform", "lognormal"] = Field(
        "fixed", alias="delayDistribution"
    )
    delay_spread: float = Field(0.25, alias="delaySpread", ge=0, le=5)
    boot_failure_rate: float = Field(0.0, alias="bootFailureRate", ge=0, lt=1)


class PoolModel(_Strict):
    """The fields of a ``NodePool`` spec (camelCase, as in the CRD) plus its name."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=63)
    provider: ProviderName = "fake"
    group_id: str = Field("", alias="groupId")
    region: str = ""
    zone: str = ""
    instance_type: str = Field("", alias="instanceType")
    gpu_type: str = Field(ANY_GPU_TYPE, alias="gpuType", pattern=GPU_TYPE_PATTERN)
    gpus_per_node: int = Field(alias="gpusPerNode", ge=1, le=16)
    min_nodes: int = Field(0, alias="minNodes", ge=0)
    max_nodes: int = Field(alias="maxNodes", ge=0)
    price_usd_per_hour: float = Field(alias="pricePerHour", ge=0)
    spot: bool = False
    provisioning_delay_s: float = Field(300.0, alias="provisioningDelaySeconds", ge=0)
    idle_timeout_s: float | None = Field(None, alias="idleTimeoutSeconds", ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[str] = Field(default_factory=list)
    simulation: _SimulationModel = Field(default_factory=_SimulationModel)
    aws: dict[str, Any] = Field(default_factory=dict)
    gcp: dict[str, Any] = Field(default_factory=dict)
    azure: dict[str, Any] = Field(default_factory=dict)
    kwok: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _min_le_max(self) -> PoolModel:
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"minNodes ({self.min_nodes}) must be <= maxNodes ({self.max_nodes})")
        return self

    def to_spec(self) -> PoolSpec:
        return PoolSpec(
            name=self.name,
            provider=self.provider,
            gpu_type=self.gpu_type,
            gpus_per_node=self.gpus_per_node,
            min_nodes=self.min_nodes,
            max_nodes=self.max_nodes,
            price_usd_per_hour=self.price_usd_per_hour,
            spot=self.spot,
            provisioning_delay_s=self.provisioning_delay_s,
            idle_timeout_s=self.idle_timeout_s,
            labels=MappingProxyType(dict(self.labels)),
            taints=tuple(self.taints),
        )


DEFAULT_POOL = PoolModel.model_validate(
    {
        "name": "default",
        "gpusPerNode": 8,
        "minNodes": 0,
        "maxNodes": 10_000,
        "pricePerHour": 32.77,
        "provisioningDelaySeconds": 300,
    }
)
"""The pool used when none is given (DESIGN.md): 8-GPU nodes of any type, 0..10,000 nodes,
5-minute provisioning, 32.77 USD/node-hour (8xA100 on demand). Its idle timeout is the
policy's (600 s by default), so tuning the policy's timeout applies to it."""


def _pool_entries(data: Any, source: str) -> list[tuple[str, Mapping[str, Any]]]:
    """Accept ``{pools: [...]}``, a bare list, or NodePool manifests (``kind: NodePool``)."""
    if isinstance(data, Mapping) and "pools" in data:
        data = data["pools"]
    if isinstance(data, Mapping) and data.get("kind") == "NodePool":
        data = [data]
    if not isinstance(data, Sequence) or isinstance(data, str | bytes):
        raise ConfigError(
            f"{source}: expected a list of pools (or a mapping with a 'pools' list), "
            f"got {type(data).__name__}"
        )
    entries: list[tuple[str, Mapping[str, Any]]] = []
    for i, item in enumerate(data):
        where = f"pools[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{source}: {where}: expected a mapping, got {type(item).__name__}")
        if item.get("kind") == "NodePool":
            meta = item.get("metadata") or {}
            spec = dict(item.get("spec") or {})
            spec.setdefault("name", meta.get("name", ""))
            entries.append((f"{where}(NodePool {meta.get('name', '?')})", spec))
        else:
            entries.append((where, item))
    return entries


def parse_pools(data: Any, *, source: str = "pools") -> list[PoolModel]:
    """Validate a pools file; names must be unique. Errors name ``source``, index and field."""
    models: list[PoolModel] = []
    errors: list[str] = []
    for where, entry in _pool_entries(data, source):
        try:
            models.append(PoolModel.model_validate(entry))
        except ValidationError as err:
            errors.append(_format_errors(f"{source}: {where}", err))
    if errors:
        raise ConfigError("\n".join(errors))
    if not models:
        raise ConfigError(f"{source}: no pools defined")
    seen: set[str] = set()
    for m in models:
        if m.name in seen:
            raise ConfigError(f"{source}: pool name {m.name!r} is used more than once")
        seen.add(m.name)
    return models
