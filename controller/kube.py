"""Kubernetes I/O: a small typed REST layer over pykube-ng's authenticated HTTP client.

pykube-ng reads the kubeconfig (or the in-cluster service account) and signs requests;
this module builds the paths, pages through lists, and turns failed calls into
:class:`ApiError` with the API server's own message. Every call blocks: the controller
makes them from worker threads (one HTTP session per thread, since a requests session is
not meant to be shared across threads), never from the event loop.

Bound ServiceAccount tokens expire (an hour, typically) and the kubelet rewrites the
mounted token file well before that; pykube-ng reads the file once. So a token that comes
from a file (in-cluster, or a kubeconfig's ``tokenFile`` as client-go reads it) is handed
out by :class:`TokenFile`, which re-reads the file when it changes, at least every minute,
and after a 401.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pykube
import requests

from controller.names import API_VERSION, DLJOBS, DLSERVICES, FIELD_MANAGER, NODEPOOLS

log = logging.getLogger("dlscaler.kube")

Obj = dict[str, Any]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_RECHECK_S = 60.0
"""Re-read a token file at least this often even if it looks unchanged (client-go's period)."""
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


class TokenFile:
    """The current content of a bearer-token file (thread-safe).

    Each use costs one ``stat``: the file is read again when its inode, size or
    modification time changed (the kubelet swaps a symlink to a new file), when
    ``recheck_s`` has passed, or when forced after a 401. A failed read keeps the last
    token (the next use tries again) rather than sending none.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        recheck_s: float = TOKEN_RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.recheck_s = recheck_s
        self.clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._signature: tuple[int, int, int] | None = None
        self._read_at = -float("inf")
        self.reads = 0
        """How many times the file was read (for tests and debugging)."""

    def token(self, *, force: bool = False) -> str:
        with self._lock:
            now = self.clock()
            try:
                st = os.stat(self.path)
                signature: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:
                signature = None
            stale = now - self._read_at >= self.recheck_s
            if force or stale or signature != self._signature or not self._token:
                self._read(now, signature)
            return self._token

    def _read(self, now: float, signature: tuple[int, int, int] | None) -> None:
        try:
            token = self.path.read_text().strip()
        except OSError as err:
            log.warning("could not read the token file %s (keeping the last token): %s",
                        self.path, err)  # fmt: skip
            return
        if not token:
            log.warning("the token file %s is empty (keeping the last token)", self.path)
            return
        if self._token and token != self._token:
            log.info("token file %s changed: using the new token", self.path)
        self._token, self._signature, self._read_at = token, signature, now
        self.reads += 1


class TokenFileConfig(pykube.KubeConfig):  # type: ignore[misc]
    """A kubeconfig whose user's token is the current content of a :class:`TokenFile`.

    pykube-ng's HTTP adapter reads ``config.user["token"]`` on every request, and the
    operator's kopf login handler reads it whenever kopf (re)authenticates (kopf logs in
    again after a 401), so overriding ``user`` reaches both without touching either.
    """

    def __init__(self, base: pykube.KubeConfig, token_file: TokenFile) -> None:
        super().__init__(base.doc, current_context=base.current_context)
        self.filepath = base.filepath  # relative paths in the kubeconfig resolve as before
        self.token_file = token_file

    @property
    def user(self) -> dict[str, Any]:
        user = dict(super().user)
        user["token"] = self.token_file.token()
        return user


def load_config(
    kubeconfig: str | None = None, *, service_account_dir: str | os.PathLike[str] | None = None
) -> pykube.KubeConfig:
    """``kubeconfig`` if given; else the in-cluster service account (files in
    ``service_account_dir``, by default where Kubernetes mounts them); else ``$KUBECONFIG``
    or ``~/.kube/config``. A token read from a file (the service account's, or a
    kubeconfig user's ``tokenFile``) follows the file as it is rotated."""
    sa_dir = Path(service_account_dir) if service_account_dir else SERVICE_ACCOUNT_DIR
    if kubeconfig:
        config = pykube.KubeConfig.from_file(kubeconfig)
    elif (sa_dir / "token").exists():
        config = pykube.KubeConfig.from_service_account(path=str(sa_dir))
        return TokenFileConfig(config, TokenFile(sa_dir / "token"))
    else:
        config = pykube.KubeConfig.from_file(os.environ.get("KUBECONFIG") or None)
    token_file = config.user.get("tokenFile")
    if token_file and not config.user.get("token"):
        # client-go's rule: relative to the kubeconfig file; an inline token wins.
        path = Path(os.path.expanduser(str(token_file)))
        if not path.is_absolute() and config.filepath is not None:
            path = Path(config.filepath).parent / path
        return TokenFileConfig(config, TokenFile(path))
    return config


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

    def _token_renewed(self, refused: requests.Response) -> bool:
        """After a 401: read the token file again; True if it now holds another token than
        the refused request carried."""
        token_file = getattr(self.config, "token_file", None)
        if not isinstance(token_file, TokenFile):
            return False
        sent = refused.request.headers.get("Authorization", "")
        return f"Bearer {token_file.token(force=True)}" != sent

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

        def send() -> requests.Response:
            try:
                resp: requests.Response = client.session.request(
                    method,
                    url,
                    params=dict(params or {}),
                    data=data,
                    headers=headers,
                    timeout=self.timeout_s,
                )
            except requests.RequestException as err:
                raise ApiError(0, str(err), reason="NoResponse", path=path) from err
            return resp

        resp = send()
        if resp.status_code == 401 and self._token_renewed(resp):
            resp = send()  # the token was rotated (and the old one revoked) since it was sent
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
