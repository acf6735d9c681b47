"""Scale-down of named nodes: check, cordon, evict (respecting PodDisruptionBudgets), remove.

The policy names the idle nodes to remove; before touching one, the controller looks at the
pods on it *now* (not at the snapshot): a node with a DLJob worker or any pod holding GPUs
is never drained. Draining is marked on the Node (annotation ``dlscaler.io/draining-since``)
so it survives a controller restart. Pods are evicted through the Eviction API, which
refuses (HTTP 429) while a PodDisruptionBudget forbids it; the node then stays cordoned and
is retried next pass, up to ``max_drain_s``, after which it is uncordoned and kept.
DaemonSet and mirror pods are left alone (they go with the node). Only an empty node is
handed to its provider for deletion.

Consolidation (the predictive policy's ``consolidateWithinSeconds``) names *busy* nodes
instead: :func:`cordon` only makes one unschedulable and marks it
(``dlscaler.io/consolidating-since``); nothing on it is evicted, and a drain never starts
while its GPU work runs. Once it holds no GPU work (:func:`emptied`) it goes through the
drain above like any idle node, the mark traded for the drain's. :func:`uncordon` puts back
only a node that still carries the mark, so a node an administrator cordoned stays so.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.clock import format_time
from controller.dljob import PodView, parse_pod
from controller.kube import ApiError, Kube, core_path
from controller.names import CONSOLIDATING_ANNOTATION, DRAINING_ANNOTATION
from controller.snapshot import NodeView

log = logging.getLogger("dlscaler.drain")


@dataclass(frozen=True, slots=True)
class DrainProgress:
    node: str
    done: bool
    """Nothing left to evict: the node may be deleted."""
    aborted: bool = False
    """Work arrived on the node: draining stopped, the node is uncordoned."""
    message: str = ""


def pods_on(kube: Kube, node: str) -> list[PodView]:
    items = kube.list(core_path("pods"), field_selector=f"spec.nodeName={node}")
    return [parse_pod(p) for p in items]


def blocking_work(pods: Sequence[PodView]) -> PodView | None:
    """A pod that forbids removing the node: a DLJob worker, or anything holding GPUs."""
    for pod in pods:
        if pod.active and (pod.job_uid or pod.gpus):
            return pod
    return None


def start(kube: Kube, node: str, now_s: float) -> str:
    """Cordon ``node`` for removal, unless it runs work that forbids it; '' when started,
    else why not."""
    blocker = blocking_work(pods_on(kube, node))
    if blocker is not None:
        return f"pod {blocker.namespace}/{blocker.name} runs on it"
    marks = {DRAINING_ANNOTATION: format_time(now_s), CONSOLIDATING_ANNOTATION: None}
    kube.merge_patch(
        core_path("nodes", name=node),
        {"metadata": {"annotations": marks}, "spec": {"unschedulable": True}},
    )
    return ""


def stop(kube: Kube, node: str) -> None:
    """Give up draining: uncordon and drop the mark."""
    kube.merge_patch(
        core_path("nodes", name=node),
        {"metadata": {"annotations": {DRAINING_ANNOTATION: None}}, "spec": {"unschedulable": None}},
    )


def progress(kube: Kube, node: str) -> DrainProgress:
    """Evict what can be evicted; report whether the node is empty."""
    pods = pods_on(kube, node)
    blocker = blocking_work(pods)
    if blocker is not None:
        stop(kube, node)
        return DrainProgress(
            node,
            done=False,
            aborted=True,
            message=f"pod {blocker.namespace}/{blocker.name} started on it",
        )
    left = [p for p in pods if p.active and not p.daemonset and not p.mirror]
    refused = []
    for pod in left:
        if pod.deleting:
            continue
        try:
            evict(kube, pod)
        except ApiError as err:
            if err.status == 429:
                refused.append(f"{pod.namespace}/{pod.name}: {err.message}")
            elif not err.not_found:
                raise
    if not left:
        return DrainProgress(node, done=True)
    message = f"{len(left)} pods still on the node"
    if refused:
        message += "; eviction refused (PodDisruptionBudget): " + "; ".join(refused[:3])
    return DrainProgress(node, done=False, message=message)


def evict(kube: Kube, pod: PodView) -> None:
    kube.create(
        core_path("pods", pod.namespace, pod.name, "eviction"),
        {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod.name, "namespace": pod.namespace},
        },
    )


# --- consolidation -----------------------------------------------------------------------


def cordon(kube: Kube, node: str, now_s: float) -> None:
    """Take a busy node out of service for consolidation: no new pods, nothing evicted."""
    kube.merge_patch(
        core_path("nodes", name=node),
        {
            "metadata": {"annotations": {CONSOLIDATING_ANNOTATION: format_time(now_s)}},
            "spec": {"unschedulable": True},
        },
    )


def uncordon(kube: Kube, node: str) -> bool:
    """Put a node consolidation cordoned back in service; False, and the node untouched, when
    it no longer carries the mark (someone else's cordon, or its removal has begun).

    One JSON patch: removing an absent annotation fails (422), and the whole patch with it,
    so the check and the uncordon cannot be split by another writer."""
    mark = "/metadata/annotations/" + CONSOLIDATING_ANNOTATION.replace("~", "~0").replace("/", "~1")
    ops: list[dict[str, Any]] = [
        {"op": "remove", "path": mark},
        # ``add`` sets the field whether or not it is there (``false`` is stored as absent).
        {"op": "add", "path": "/spec/unschedulable", "value": False},
    ]
    try:
        kube.json_patch(core_path("nodes", name=node), ops)
    except ApiError as err:
        if err.status == 422 or err.not_found:
            return False
        raise
    return True


def forget(kube: Kube, node: str) -> None:
    """Drop the mark from a node someone put back in service: were it cordoned again later,
    it would not be the controller's to uncordon."""
    kube.merge_patch(
        core_path("nodes", name=node),
        {"metadata": {"annotations": {CONSOLIDATING_ANNOTATION: None}}},
    )


def emptied(nodes: Iterable[NodeView], used_gpus: Mapping[str, int]) -> list[NodeView]:
    """Nodes consolidation cordoned that hold no GPU work any more: to be removed."""
    return [n for n in nodes if n.consolidating and not used_gpus.get(n.name, 0)]


def stale_marks(nodes: Iterable[NodeView]) -> list[NodeView]:
    """Nodes still marked as cordoned for consolidation that someone uncordoned."""
    return [
        n
        for n in nodes
        if n.consolidating_since_s is not None
        and not n.cordoned
        and n.draining_since_s is None
        and not n.deleting
    ]


def awaiting_workers(pods: Iterable[PodView], admitted: Collection[str] = ()) -> set[str]:
    """Nodes a worker is placed on but not yet bound to (its pod pending, or yet to be
    created), plus ``admitted`` (nodes of this pass's admissions and growths). Such a node
    must not be cordoned: the scheduler places no pod on an unschedulable node, and the
    worker is pinned to it."""
    out = set(admitted)
    out.update(p.holds_node for p in pods if p.holds_node and not p.node_name)
    return out
