"""The kopf handlers: thin translations of watch events into the loop's inputs.

Every replica runs them (so a standby's cache is warm when it takes over); they write
nothing to the cluster, so they need no leadership. Each event updates the object cache
(:mod:`controller.cache`) and, if it is relevant (:mod:`controller.triggers`), wakes the
scaling loop (:mod:`controller.reconcile`), which is level-triggered: it decides from the
whole current state, never from the event itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf
import pykube

from controller.cache import ObjectCache
from controller.names import (
    DLJOBS,
    DLSERVICES,
    GROUP,
    JOB_UID_LABEL,
    NODEPOOLS,
    SERVICE_LABEL,
    VERSION,
)
from controller.triggers import ChangeFilter

Wake = Callable[[str], None]


def connection_info(config: pykube.KubeConfig) -> kopf.ConnectionInfo:
    """kopf's credentials from the same pykube configuration the controller's calls use."""
    ca = config.cluster.get("certificate-authority")
    cert = config.user.get("client-certificate")
    key = config.user.get("client-key")
    return kopf.ConnectionInfo(
        server=config.cluster["server"],
        ca_path=ca.filename() if ca else None,
        insecure=config.cluster.get("insecure-skip-tls-verify"),
        token=config.user.get("token"),
        certificate_path=cert.filename() if cert else None,
        private_key_path=key.filename() if key else None,
        default_namespace=config.namespace,
    )


def register(
    registry: kopf.OperatorRegistry,
    *,
    config: pykube.KubeConfig,
    wake: Wake,
    changes: ChangeFilter,
    cache: ObjectCache | None = None,
    nodepool_selector: dict[str, Any] | None = None,
) -> None:
    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(config)

    cached = ("DLJob", "DLService", "Node")

    def relay(kind: str) -> Callable[..., Any]:
        async def handler(event: kopf.RawEvent, **_: Any) -> None:
            obj = event.get("object") or {}
            if cache is not None and kind in cached:
                cache.observe(kind, event.get("type"), obj)
            if changes.changed(kind, event.get("type"), obj):
                wake(kind)

        return handler

    kopf.on.event(GROUP, VERSION, DLJOBS, registry=registry, id="dljob")(relay("DLJob"))
    kopf.on.event(GROUP, VERSION, DLSERVICES, registry=registry, id="dlservice")(relay("DLService"))
    kopf.on.event(
        GROUP, VERSION, NODEPOOLS, registry=registry, id="nodepool", labels=nodepool_selector
    )(relay("NodePool"))
    kopf.on.event("", "v1", "nodes", registry=registry, id="node")(relay("Node"))
    kopf.on.event(
        "", "v1", "pods", registry=registry, id="worker", labels={JOB_UID_LABEL: kopf.PRESENT}
    )(relay("Pod"))
    kopf.on.event(
        "", "v1", "pods", registry=registry, id="replica", labels={SERVICE_LABEL: kopf.PRESENT}
    )(relay("Pod"))
