"""The kopf handlers: thin translations of watch events into "look again" for the loop.

Every replica runs them (so a standby's watches are warm when it takes over); they write
nothing, so they need no leadership. The scaling loop (:mod:`controller.reconcile`) is
level-triggered: it reads the cluster afresh on each pass, so a handler only decides
whether an event is relevant (:mod:`controller.triggers`) and, if so, wakes the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf
import pykube

from controller.names import DLJOBS, DLSERVICES, GROUP, JOB_UID_LABEL, NODEPOOLS, VERSION
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
    nodepool_selector: dict[str, Any] | None = None,
) -> None:
    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(config)

    def relay(kind: str) -> Callable[..., Any]:
        async def handler(event: kopf.RawEvent, **_: Any) -> None:
            if changes.changed(kind, event.get("type"), event.get("object") or {}):
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
