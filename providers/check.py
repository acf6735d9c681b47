"""``dlscaler providers check``: describe every pool and say, in plain words, what is wrong.

Each pool is built, described and asked for its node template with the same adapter the
controller uses; a failure is reported with what to do about it (the permission to grant,
the field to fix), and differences between the pool file and the cloud group are warnings.
One failing pool never stops the others from being checked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dlscaler.config import PoolModel
from dlscaler.pool import (
    ErrorKind,
    GroupDescription,
    InstanceState,
    NodePoolProvider,
    NodeTemplate,
    ProviderError,
)
from providers.factory import build_provider
from providers.retry import RetryPolicy

Builder = Callable[..., NodePoolProvider]

CHECK_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.5, max_delay_s=2.0)
"""A check should answer within seconds: fewer, shorter retries than the controller's."""


@dataclass(frozen=True)
class PoolCheck:
    pool: PoolModel
    description: GroupDescription | None = None
    template: NodeTemplate | None = None
    error: ProviderError | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.error is None


def where(pool: PoolModel) -> str:
    """The cloud group a pool points at, in words."""
    group = pool.group_id or pool.name
    if pool.provider == "aws":
        if pool.aws.get("clusterName"):
            name = pool.aws.get("nodegroupName") or group
            return f"EKS node group {name} of cluster {pool.aws['clusterName']} in {pool.region}"
        name = pool.aws.get("autoScalingGroupName") or group
        return f"Auto Scaling group {name} in {pool.region}"
    if pool.provider == "gcp":
        place = f"zone {pool.zone}" if pool.zone else f"region {pool.region}"
        return f"managed instance group {group} in project {pool.gcp.get('project', '?')}, {place}"
    if pool.provider == "azure":
        rg = pool.azure.get("resourceGroup", "?")
        return f"virtual machine scale set {group} in resource group {rg}"
    if pool.provider == "kwok":
        return f"kwok nodes labelled dlscaler.io/pool={pool.name}"
    return f"in-memory fake group {group}"


DOCS = "docs/providers.md"


def explain(error: ProviderError, provider: str) -> str:
    """What went wrong and what to do, for a person reading the check's output."""
    said = error.message
    kind = error.kind
    if kind is ErrorKind.PERMISSION:
        if error.permission:
            return (
                f"permission denied: dlscaler's identity lacks {error.permission}. Grant it "
                f"(see {DOCS}, {provider} permissions) and run the check again. "
                f"The cloud said: {said}"
            )
        return f"not authenticated: {said}"
    if kind is ErrorKind.INVALID_CONFIG:
        return f"configuration error: {said}"
    if kind is ErrorKind.THROTTLED:
        return f"the cloud is throttling requests; try again in a minute ({said})"
    if kind is ErrorKind.TRANSIENT:
        return f"could not get an answer from the cloud; try again ({said})"
    if kind is ErrorKind.CAPACITY:
        return f"no capacity for this instance type right now (stockout): {said}"
    if kind is ErrorKind.QUOTA:
        return f"quota exhausted; ask the cloud for a higher limit: {said}"
    return f"{kind.value}: {said}"


def _warnings(pool: PoolModel, desc: GroupDescription, template: NodeTemplate | None) -> list[str]:
    notes: list[str] = []
    if (desc.min_size, desc.max_size) != (pool.min_nodes, pool.max_nodes):
        notes.append(
            f"the group allows {desc.min_size}..{desc.max_size} nodes but the pool asks for "
            f"{pool.min_nodes}..{pool.max_nodes}; targets outside the group's bounds are refused"
        )
    if template is not None:
        if template.gpus_per_node != pool.gpus_per_node:
            notes.append(
                f"the pool says gpusPerNode {pool.gpus_per_node} but {template.instance_type} "
                f"nodes have {template.gpus_per_node} GPUs; fix gpusPerNode"
            )
        if pool.instance_type and template.instance_type != pool.instance_type:
            notes.append(
                f"the pool says instanceType {pool.instance_type} but the group launches "
                f"{template.instance_type}"
            )
        spot = template.labels.get("dlscaler.io/capacity-type") == "spot"
        if spot != pool.spot:
            notes.append(
                f"the pool says spot: {str(pool.spot).lower()} but the group's nodes are "
                f"{'spot' if spot else 'on-demand'}"
            )
    if desc.scale_up_error is not None:
        notes.append(
            f"the group is below its target: {explain(desc.scale_up_error, pool.provider)}"
        )
    failed = [i.name or i.provider_id for i in desc.instances if i.state is InstanceState.FAILED]
    if failed:
        notes.append(f"{len(failed)} instances failed: {', '.join(failed[:5])}")
    return notes


def check_pool(pool: PoolModel, *, build: Builder = build_provider, **overrides: Any) -> PoolCheck:
    try:
        provider = build(pool, **overrides)
        desc = provider.describe()
    except ProviderError as err:
        return PoolCheck(pool, error=err)
    try:
        template = provider.node_template()
    except ProviderError as err:
        return PoolCheck(pool, description=desc, error=err)
    return PoolCheck(pool, desc, template, warnings=tuple(_warnings(pool, desc, template)))


def check_pools(
    pools: Sequence[PoolModel], *, build: Builder = build_provider, **overrides: Any
) -> list[PoolCheck]:
    if "retrier" not in overrides and "retry_policy" not in overrides:
        overrides["retry_policy"] = CHECK_RETRY
    return [check_pool(pool, build=build, **overrides) for pool in pools]


def _counts(desc: GroupDescription) -> str:
    states: dict[str, int] = {}
    for i in desc.instances:
        states[i.state.value] = states.get(i.state.value, 0) + 1
    listed = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none"
    return (
        f"target {desc.target_size} (bounds {desc.min_size}..{desc.max_size}), instances: {listed}"
    )


def render_text(results: Sequence[PoolCheck]) -> str:
    lines: list[str] = []
    for r in results:
        lines.append(f"pool {r.pool.name} ({r.pool.provider}): {where(r.pool)}")
        if r.description is not None:
            lines.append(f"  {_counts(r.description)}")
        if r.template is not None:
            t = r.template
            gpus = f"{t.gpus_per_node} x {t.gpu_type or 'unspecified GPU'}"
            extra = f", {t.cpu} vCPU, {t.memory_mib // 1024} GiB" if t.cpu else ""
            lines.append(f"  nodes: {t.instance_type or '?'}, {gpus}{extra}")
            if t.taints:
                lines.append(f"  taints: {', '.join(t.taints)}")
        if r.error is not None:
            lines.append(f"  ERROR {explain(r.error, r.pool.provider)}")
        for note in r.warnings:
            lines.append(f"  warning: {note}")
        if r.ok:
            lines.append("  ok")
    bad = sum(1 for r in results if not r.ok)
    lines.append(
        f"{len(results)} pools checked: " + ("all reachable" if not bad else f"{bad} with errors")
    )
    return "\n".join(lines)


def to_json(results: Sequence[PoolCheck]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in results:
        item: dict[str, Any] = {
            "pool": r.pool.name,
            "provider": r.pool.provider,
            "where": where(r.pool),
            "ok": r.ok,
            "warnings": list(r.warnings),
        }
        if r.description is not None:
            d = r.description
            item["group"] = {
                "id": d.group_id,
                "min": d.min_size,
                "max": d.max_size,
                "target": d.target_size,
                "instances": [
                    {"providerID": i.provider_id, "state": i.state.value, "error": i.error}
                    for i in d.instances
                ],
            }
        if r.template is not None:
            t = r.template
            item["template"] = {
                "instanceType": t.instance_type,
                "gpuType": t.gpu_type,
                "gpusPerNode": t.gpus_per_node,
                "labels": dict(t.labels),
                "taints": list(t.taints),
            }
        if r.error is not None:
            item["error"] = {
                "kind": r.error.kind.value,
                "code": r.error.code,
                "permission": r.error.permission,
                "message": explain(r.error, r.pool.provider),
            }
        out.append(item)
    return out
