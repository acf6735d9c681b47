"""Data keys of one ConfigMap the leader keeps across restarts (the demand history, the
finished jobs): read, and written back without losing anyone else's changes.

A write is a JSON merge patch of just the given keys, so what others put on the ConfigMap
(Helm's labels and annotations, which ``helm upgrade`` and ``helm uninstall`` rely on;
other keys) stays. The patch carries the resourceVersion last seen, which the API server
checks as on a PUT: a write by someone else in between is a 409, not silently overwritten;
the store then takes the current version as its base for the next write. The first write
creates the ConfigMap if the chart did not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.kube import ApiError, Kube, core_path


class ConfigMapStore:
    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self._resource_version = ""

    @property
    def path(self) -> str:
        return core_path("configmaps", self.namespace, self.name)

    def load(self) -> dict[str, str]:
        """The ConfigMap's data ({} when it has none or does not exist)."""
        obj = self.kube.get(self.path)
        if obj is None:
            return {}
        self._resource_version = str(obj["metadata"].get("resourceVersion", ""))
        return {str(k): str(v) for k, v in (obj.get("data") or {}).items()}

    def save(self, data: Mapping[str, str]) -> None:
        """Write these keys (the others are left as they are). Raises ``ApiError``; a 409
        or 404 after taking the current resourceVersion, so the next call can succeed."""
        try:
            if self._resource_version:
                patch = {
                    "metadata": {"resourceVersion": self._resource_version},
                    "data": dict(data),
                }
                obj = self.kube.merge_patch(self.path, patch)
            else:
                body: dict[str, Any] = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": self.name,
                        "namespace": self.namespace,
                        "labels": {"app.kubernetes.io/part-of": "dlscaler"},
                    },
                    "data": dict(data),
                }
                obj = self.kube.create(core_path("configmaps", self.namespace), body)
        except ApiError as err:
            if not (err.conflict or err.not_found):
                raise
            # Someone else wrote it (or it was deleted): take theirs as the base next time.
            current = self.kube.get(self.path)
            self._resource_version = str(current["metadata"]["resourceVersion"]) if current else ""
            raise
        self._resource_version = str(obj["metadata"].get("resourceVersion", ""))


class ConfigMapBacked:
    """Base of a store kept in one ConfigMap: where it is, for messages and callers."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.configmap = ConfigMapStore(kube, namespace, name)

    @property
    def namespace(self) -> str:
        return self.configmap.namespace

    @property
    def name(self) -> str:
        return self.configmap.name

    @property
    def path(self) -> str:
        return self.configmap.path
