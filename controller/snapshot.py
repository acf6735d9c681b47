"""From cluster objects to the policy's view: ``PoolState`` per NodePool.

Pure: Nodes, pods and each pool's provider description go in (as the API server and the
cloud returned them), frozen ``dlscaler.model`` types come out. The rules:

* A node belongs to the pool whose provider lists its ``spec.providerID``, else to the pool
  named by its ``dlscaler.io/pool`` label.
* It is READY once it is Ready, schedulable, and its ``nvidia.com/gpu`` is allocatable;
  DRAINING while the controller drains it or consolidation cordoned it (or anyone cordoned
  or deletes it); otherwise IN_FLIGHT. Instances the provider lists without a Node yet are
  IN_FLIGHT too, and a target above everything listed counts as in flight
  (``PoolState.target_nodes``): nodes asked for always count as capacity, so a loop never
  asks twice for the same gang.
* A node in flight longer than the maximum provisioning time is *stuck*: it no longer
  counts as capacity (the pool is backed off and the gang goes to the next pool).
* GPUs in use: every active pod bound to the node, plus our admitted workers not yet bound
  (they are pinned to the node admission reserved for them). A DRAINING node shows its
  GPUs in use only when consolidation cordoned it: the policy takes a draining node with
  work for one it may put back in service, and a node someone else cordoned (or one being
  removed) is not the controller's to put back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.clock import parse_time
from controller.dljob import PodView
from controller.names import (
    CONSOLIDATING_ANNOTATION,
    DRAINING_ANNOTATION,
    GPU_RESOURCE,
    POOL_LABEL,
)
from dlscaler.config import PoolModel
from dlscaler.model import NodePhase, NodeState, PoolState
from dlscaler.pool import GroupDescription, InstanceState

_UNSCHEDULABLE_TAINTS = (
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/unschedulable",
    "node.cloudprovider.kubernetes.io/uninitialized",
)


@dataclass(frozen=True, slots=True)
class NodeView:
    """The parts of a Node the controller reasons about."""

    name: str
    provider_id: str
    pool_label: str
    ready: bool
    """Ready, schedulable, and GPUs allocatable: it can take work now."""
    allocatable_gpus: int
    created_s: float
    ready_since_s: float | None
    draining_since_s: float | None
    cordoned: bool
    deleting: bool
    consolidating_since_s: float | None = None
    """When consolidation cordoned it (``dlscaler.io/consolidating-since``)."""

    @property
    def draining(self) -> bool:
        return self.draining_since_s is not None or self.cordoned or self.deleting

    @property
    def consolidating(self) -> bool:
        """Cordoned by consolidation and not (yet) being removed: it still carries the
        controller's mark and is still cordoned, so it is the controller's to put back in
        service or, once empty, to remove."""
        return (
            self.consolidating_since_s is not None
            and self.cordoned
            and self.draining_since_s is None
            and not self.deleting
        )


def parse_node(obj: Mapping[str, Any]) -> NodeView:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    annotations = meta.get("annotations") or {}
    ready_cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    is_ready = bool(ready_cond and ready_cond.get("status") == "True")
    taints = {t.get("key") for t in spec.get("taints") or []}
    gpus = _quantity_int((status.get("allocatable") or {}).get(GPU_RESOURCE))
    cordoned = bool(spec.get("unschedulable"))
    usable = is_ready and gpus > 0 and not cordoned and not taints & set(_UNSCHEDULABLE_TAINTS)
    draining = parse_time(annotations.get(DRAINING_ANNOTATION))
    if DRAINING_ANNOTATION in annotations and draining is None:
        draining = 0.0  # unreadable stamp: still ours to drain
    consolidating = parse_time(annotations.get(CONSOLIDATING_ANNOTATION))
    if CONSOLIDATING_ANNOTATION in annotations and consolidating is None:
        consolidating = 0.0  # unreadable stamp: still ours
    return NodeView(
        name=str(meta.get("name", "")),
        provider_id=str(spec.get("providerID") or ""),
        pool_label=str((meta.get("labels") or {}).get(POOL_LABEL) or ""),
        ready=usable,
        allocatable_gpus=gpus,
        created_s=parse_time(meta.get("creationTimestamp")) or 0.0,
        ready_since_s=parse_time(ready_cond.get("lastTransitionTime"))
        if ready_cond is not None and is_ready
        else None,
        draining_since_s=draining,
        cordoned=cordoned,
        deleting=bool(meta.get("deletionTimestamp")),
        consolidating_since_s=consolidating,
    )


def _quantity_int(value: object) -> int:
    if value is None:
        return 0
    try:
        return int(str(value))
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class PoolInput:
    """What the controller knows of one NodePool besides its Nodes."""

    model: PoolModel
    description: GroupDescription | None
    """The provider's answer this pass (``None``: the call failed or timed out)."""
    unavailable_until_s: float | None = None
    last_scale_s: float | None = None
    """When the controller last raised the target (NodePool ``status.lastScaleTime``):
    the request time of instances the provider has not listed yet."""


@dataclass(slots=True)
class PoolObservation:
    """Per pool, what the status shows and the reconciler acts on besides the plan."""

    name: str
    target: int | None
    ready: int = 0
    in_flight: int = 0
    draining: int = 0
    stuck_provider_ids: list[str] = field(default_factory=list)
    stuck_nodes: list[str] = field(default_factory=list)
    stuck_unlisted: int = 0
    failed_instances: list[str] = field(default_factory=list)
    draining_nodes: list[str] = field(default_factory=list)
    node_provider_ids: dict[str, str] = field(default_factory=dict)

    @property
    def stuck(self) -> int:
        return len(self.stuck_nodes) + self.stuck_unlisted


@dataclass(frozen=True, slots=True)
class ClusterView:
    pools: tuple[PoolState, ...]
    observations: Mapping[str, PoolObservation]
    used_gpus: Mapping[str, int]
    """Per node name: GPUs held by active pods (bound or pinned there)."""
    node_pool: Mapping[str, str]
    """Node name -> pool name, for the nodes that belong to a pool."""


def used_gpus_by_node(pods: Iterable[PodView]) -> dict[str, int]:
    used: dict[str, int] = {}
    for pod in pods:
        node = pod.holds_node
        if node and pod.gpus:
            used[node] = used.get(node, 0) + pod.gpus
    return used


def build_view(
    *,
    now_s: float,
    pools: Sequence[PoolInput],
    nodes: Sequence[NodeView],
    pods: Sequence[PodView],
    idle_since: Mapping[str, float],
    max_provisioning_s: float,
) -> ClusterView:
    """Every pool's state. ``idle_since`` gives, for nodes that hold no GPU work, since when
    (see :class:`controller.idle.IdleTracker`); ``pods`` are every active pod plus ours."""
    by_pid: dict[str, str] = {}
    for p in pools:
        if p.description is not None:
            for inst in p.description.instances:
                by_pid[inst.provider_id] = p.model.name
    names = {p.model.name for p in pools}
    members: dict[str, list[NodeView]] = {name: [] for name in names}
    node_pool: dict[str, str] = {}
    for node in nodes:
        pool = by_pid.get(node.provider_id) or node.pool_label
        if pool in members:
            members[pool].append(node)
            node_pool[node.name] = pool
    used = used_gpus_by_node(pods)
    states: list[PoolState] = []
    observations: dict[str, PoolObservation] = {}
    for p in sorted(pools, key=lambda p: p.model.name):
        state, obs = _pool_state(
            p, members[p.model.name], used, idle_since, now_s, max_provisioning_s
        )
        states.append(state)
        observations[p.model.name] = obs
    return ClusterView(tuple(states), observations, used, node_pool)


def _pool_state(
    p: PoolInput,
    nodes: Sequence[NodeView],
    used: Mapping[str, int],
    idle_since: Mapping[str, float],
    now_s: float,
    max_provisioning_s: float,
) -> tuple[PoolState, PoolObservation]:
    spec = p.model.to_spec()
    desc = p.description
    instances = {i.provider_id: i for i in desc.instances} if desc else {}
    obs = PoolObservation(name=spec.name, target=desc.target_size if desc else None)
    states: list[NodeState] = []
    seen_pids: set[str] = set()

    def stuck(created_s: float) -> bool:
        return created_s + max_provisioning_s < now_s

    for node in sorted(nodes, key=lambda n: n.name):
        seen_pids.add(node.provider_id)
        inst = instances.get(node.provider_id)
        obs.node_provider_ids[node.name] = node.provider_id
        gpus = node.allocatable_gpus or spec.gpus_per_node
        going = inst is not None and inst.state is InstanceState.DELETING
        if node.draining or going:
            phase = NodePhase.DRAINING
            obs.draining_nodes.append(node.name)
        elif node.ready:
            phase = NodePhase.READY
        elif stuck(node.created_s):
            phase = NodePhase.DRAINING  # no longer counted as capacity
            obs.stuck_nodes.append(node.name)
            if node.provider_id:
                obs.stuck_provider_ids.append(node.provider_id)
        else:
            phase = NodePhase.IN_FLIGHT
        in_use = used.get(node.name, 0)
        if phase is NodePhase.DRAINING and (going or not node.consolidating):
            in_use = 0  # not one to put back in service (see the module's docstring)
        states.append(
            NodeState(
                name=node.name,
                phase=phase,
                gpus=gpus,
                used_gpus=min(in_use, gpus),
                created_s=node.created_s,
                idle_since_s=idle_since.get(node.name) if phase is NodePhase.READY else None,
                expected_ready_s=node.created_s + spec.provisioning_delay_s
                if phase is NodePhase.IN_FLIGHT
                else None,
            )
        )
    requested_s = p.last_scale_s if p.last_scale_s is not None else now_s
    for pid in sorted(instances):
        inst = instances[pid]
        if pid in seen_pids:
            continue
        if inst.state is InstanceState.FAILED:
            obs.failed_instances.append(inst.name or pid)
            continue
        if inst.state is InstanceState.DELETING:
            continue
        name = inst.name or pid
        if stuck(requested_s):
            obs.stuck_nodes.append(name)
            obs.stuck_provider_ids.append(pid)
            phase = NodePhase.DRAINING
        else:
            phase = NodePhase.IN_FLIGHT
        states.append(
            NodeState(
                name=name,
                phase=phase,
                gpus=spec.gpus_per_node,
                created_s=requested_s,
                expected_ready_s=requested_s + spec.provisioning_delay_s
                if phase is NodePhase.IN_FLIGHT
                else None,
            )
        )
    target = desc.target_size if desc else None
    if target is not None:
        # Counted in the cloud's target but not listed anywhere yet: asked for, on its way.
        listed_live = sum(1 for s in states if s.phase is not NodePhase.DRAINING)
        listed_stuck = len(obs.stuck_nodes)
        unlisted = max(0, target - listed_live - listed_stuck - len(obs.draining_nodes))
        if unlisted and stuck(requested_s):
            obs.stuck_unlisted = unlisted
        # PoolState counts (target - live listed) as in flight; stuck and draining nodes
        # are still in the cloud's target, so they are taken out of it here.
        target = max(0, target - listed_stuck - len(obs.draining_nodes) - obs.stuck_unlisted)
    state = PoolState(
        spec=spec,
        nodes=tuple(states),
        target_nodes=target,
        unavailable_until_s=p.unavailable_until_s,
    )
    obs.ready = state.ready_nodes
    obs.in_flight = state.in_flight_nodes
    obs.draining = len(obs.draining_nodes)
    return state, obs
