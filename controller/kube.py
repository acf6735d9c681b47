"""Kubernetes I/O: a small typed REST layer over pykube-ng's authenticated HTTP client.

pykube-ng reads the kubeconfig (or the in-cluster service account) and signs requests;
this module builds the paths, pages through lists, and turns failed calls into
:class:`ApiError` with the API server's own message. Every call blocks: the controller
makes them from worker threads (one HTTP session per thread, since a requests session is
not meant to be shared across threads), never from the event loop.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import pykube
import requests

from controller.names import API_VERSION, DLJOBS, DLSERVICES, FIELD_MANAGER, NODEPOOLS

log = logging.getLogger("dlscaler.kube")

Obj = dict[str, Any]

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
LIST_PAGE = 500


class ApiError(Exception):
    """A Kubernetes API call failed: ``status`` is the HTTP code (0: no response)."""

    def __init__(self, status: int, message: str, *, reason: str = "", path: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}" + (f" ({path})" if path else ""))
        self.status = status
        self.reason = reason
        self.message = message
        self.path = path

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """409: already exists, or the object changed since it was read."""
        return self.status == 409

    @property
    def retryable(self) -> bool:
        return self.status in (0, 429, 500, 502, 503, 504)


def load_config(kubeconfig: str | None = None) -> pykube.KubeConfig:
    """``kubeconfig`` if given; else the in-cluster service account; else ``$KUBECONFIG``
    or ``~/.kube/config``."""
    if kubeconfig:
        return pykube.KubeConfig.from_file(kubeconfig)
    if os.path.exists(SERVICE_ACCOUNT_TOKEN):
        return pykube.KubeConfig.from_service_account()
    return pykube.KubeConfig.from_file(os.environ.get("KUBECONFIG") or None)


class Kube:
    """The API server, reached with one kubeconfig."""

    def __init__(self, config: pykube.KubeConfig, *, timeout_s: float = 15.0) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self._local = threading.local()

    @classmethod
    def connect(cls, kubeconfig: str | None = None, *, timeout_s: float = 15.0) -> Kube:
        return cls(load_config(kubeconfig), timeout_s=timeout_s)

    @property
    def server(self) -> str:
        return str(self.config.cluster["server"])

    def _client(self) -> pykube.HTTPClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = pykube.HTTPClient(self.config, timeout=self.timeout_s)
            self._local.client = client
        return client

    # --- raw calls -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        """One call; the decoded JSON reply, or :class:`ApiError`."""
        client = self._client()
        url = client.url.rstrip("/") + path
        headers = {"Content-Type": content_type} if body is not None else {}
        data = json.dumps(body) if body is not None else None
        try:
            resp = client.session.request(
                method,
                url,
                params=dict(params or {}),
                data=data,
                headers=headers,
                timeout=self.timeout_s,
            )
        except requests.RequestException as err:
            raise ApiError(0, str(err), reason="NoResponse", path=path) from err
        if resp.status_code >= 400:
            message, reason = resp.text[:2000], resp.reason
            try:
                payload = resp.json()
                message = payload.get("message", message)
                reason = payload.get("reason", reason)
            except ValueError:
                pass
            raise ApiError(resp.status_code, message, reason=reason, path=path)
        if not resp.content:
            return {}
        result: Obj = resp.json()
        return result

    def list(
        self,
        path: str,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> builtins.list[Obj]:
        """Every item of a collection, paged (``limit``/``continue``) so a list of thousands
        does not arrive as one huge reply."""
        params: dict[str, str] = {"limit": str(LIST_PAGE)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        items: builtins.list[Obj] = []
        while True:
            page = self.request("GET", path, params=params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    def get(self, path: str) -> Obj | None:
        try:
            return self.request("GET", path)
        except ApiError as err:
            if err.not_found:
                return None
            raise

    def create(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body=body, params={"fieldManager": FIELD_MANAGER})

    def create_or_get(self, path: str, body: Obj) -> tuple[Obj, bool]:
        """Create, or return the existing object of that name: ``(object, created)``."""
        try:
            return self.create(path, body), True
        except ApiError as err:
            if not err.conflict:
                raise
        existing = self.get(f"{path}/{body['metadata']['name']}")
        if existing is None:  # deleted between the two calls: the caller retries later
            raise ApiError(409, "object is being deleted", reason="Conflict", path=path)
        return existing, False

    def merge_patch(self, path: str, patch: Obj) -> Obj:
        return self.request(
            "PATCH",
            path,
            body=patch,
            content_type="application/merge-patch+json",
            params={"fieldManager": FIELD_MANAGER},
        )

    def json_patch(self, path: str, ops: builtins.list[Obj]) -> Obj:
        return self.request(
            "PATCH",
            path,
            body=ops,
            content_type="application/json-patch+json",
            params={"fieldManager": FIELD_MANAGER},
        )

    def replace(self, path: str, body: Obj) -> Obj:
        """PUT: fails with 409 if ``body``'s resourceVersion is no longer current."""
        return self.request("PUT", path, body=body, params={"fieldManager": FIELD_MANAGER})

    def delete(self, path: str, *, propagation: str = "Background") -> bool:
        """Delete; False if it was already gone."""
        try:
            self.request(
                "DELETE",
                path,
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": propagation,
                },
            )
        except ApiError as err:
            if err.not_found:
                return False
            raise
        return True


# --- paths ---------------------------------------------------------------------------------


def core_path(resource: str, namespace: str = "", name: str = "", sub: str = "") -> str:
    return _path("/api/v1", resource, namespace, name, sub)


def group_path(
    api_version: str, resource: str, namespace: str = "", name: str = "", sub: str = ""
) -> str:
    return _path(f"/apis/{api_version}", resource, namespace, name, sub)


def custom_path(plural: str, namespace: str = "", name: str = "", sub: str = "") -> str:
    return group_path(API_VERSION, plural, namespace, name, sub)


def _path(base: str, resource: str, namespace: str, name: str, sub: str) -> str:
    parts = [base]
    if namespace:
        parts += ["namespaces", namespace]
    parts.append(resource)
    if name:
        parts.append(name)
    if sub:
        parts.append(sub)
    return "/".join(parts)


def object_path(obj: Mapping[str, Any], sub: str = "") -> str:
    """The path of an object as the API server returned it (any kind we handle)."""
    meta = obj["metadata"]
    kind = obj.get("kind", "")
    plural = _PLURALS.get(kind)
    if plural is None:
        raise ValueError(f"no path known for kind {kind!r}")
    api_version = obj.get("apiVersion", "v1")
    if api_version == "v1":
        return core_path(plural, meta.get("namespace", ""), meta["name"], sub)
    return group_path(api_version, plural, meta.get("namespace", ""), meta["name"], sub)


_PLURALS = {
    "Pod": "pods",
    "Service": "services",
    "Node": "nodes",
    "ConfigMap": "configmaps",
    "Event": "events",
    "Deployment": "deployments",
    "Lease": "leases",
    "DLJob": DLJOBS,
    "DLService": DLSERVICES,
    "NodePool": NODEPOOLS,
}


def list_in_namespaces(
    kube: Kube,
    path_for: Any,
    namespaces: Iterable[str],
    **selectors: str,
) -> list[Obj]:
    """List across the given namespaces (empty: all namespaces, one call)."""
    spaces = list(namespaces)
    if not spaces:
        return kube.list(path_for(""), **selectors)
    out: list[Obj] = []
    for ns in spaces:
        out.extend(kube.list(path_for(ns), **selectors))
    return out


def owner_reference(owner: Mapping[str, Any], *, controller: bool = True) -> Obj:
    """An ownerReference to ``owner``: the garbage collector deletes the child with it."""
    return {
        "apiVersion": owner.get("apiVersion", API_VERSION),
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }
