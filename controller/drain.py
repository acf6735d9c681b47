"""Scale-down of named nodes: check, cordon, evict (respecting PodDisruptionBudgets), remove.

The policy names the idle nodes to remove; before touching one, the controller looks at the
pods on it *now* (not at the snapshot): a node with a DLJob worker or any pod holding GPUs
is never drained. Draining is marked on the Node (annotation ``dlscaler.io/draining-since``)
so it survives a controller restart. Pods are evicted through the Eviction API, which
refuses (HTTP 429) while a PodDisruptionBudget forbids it; the node then stays cordoned and
is retried next pass, up to ``max_drain_s``, after which it is uncordoned and kept.
DaemonSet and mirror pods are left alone (they go with the node). Only an empty node is
handed to its provider for deletion.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from controller.clock import format_time
from controller.dljob import PodView, parse_pod
from controller.kube import ApiError, Kube, core_path
from controller.names import DRAINING_ANNOTATION

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
    kube.merge_patch(
        core_path("nodes", name=node),
        {
            "metadata": {"annotations": {DRAINING_ANNOTATION: format_time(now_s)}},
            "spec": {"unschedulable": True},
        },
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
