"""An in-memory API server for whole reconcile passes: the calls ``controller.kube.Kube``
makes (list with label and field selectors, get, create, merge and JSON patches, delete,
evictions), kept as the API server keeps them.

What it copies from the real one, because the controller relies on it: a create of an
existing name is a 409; a patch of a missing object is a 404; a merge patch is RFC 7386
(``null`` deletes), one carrying a resourceVersion that is no longer current is a 409, and
a ``/status`` patch changes only the status; a JSON patch is applied whole or not at all,
and one whose ``remove`` or ``test`` does not apply is a 422 (as kube-apiserver answers);
``spec.unschedulable: false`` is stored as absent (omitempty).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
from typing import Any

from controller.kube import ApiError

Obj = dict[str, Any]


def _split(path: str) -> tuple[str, str, str, str, str]:
    """``(base, namespace, resource, name, subresource)`` of an API path."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        base, rest = "/".join(parts[:2]), parts[2:]
    else:
        base, rest = "/".join(parts[:3]), parts[3:]
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    rest += ["", ""]
    return base, namespace, rest[0], rest[1], rest[2]


def merge(target: Obj, patch: Obj) -> None:
    """RFC 7386 JSON merge patch, in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _field(obj: Obj, dotted: str) -> str:
    value: Any = obj
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _matches_fields(obj: Obj, selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if _field(obj, key) == value:
                return False
        else:
            key, value = term.split("=", 1)
            if _field(obj, key) != value:
                return False
    return True


def _matches_labels(obj: Obj, selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json_patch(obj: Obj, ops: Iterable[Obj]) -> Obj:
    """RFC 6902 on object members (what the controller sends); a copy, or ApiError(422)."""
    out = copy.deepcopy(obj)
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = out
        for key in parents:
            if not isinstance(node, dict) or key not in node:
                raise ApiError(422, f"{op['op']} {op['path']}: doc is missing path")
            node = node[key]
        if op["op"] == "add":
            node[last] = copy.deepcopy(op["value"])
        elif op["op"] in ("remove", "replace", "test"):
            if last not in node:
                raise ApiError(422, f"{op['op']} {op['path']}: doc is missing path")
            if op["op"] == "remove":
                del node[last]
            elif op["op"] == "replace":
                node[last] = copy.deepcopy(op["value"])
            elif node[last] != op["value"]:
                raise ApiError(422, f"testing value {op['path']} failed")
        else:
            raise ApiError(400, f"unsupported op {op['op']!r}")
    return out


class MemoryApi:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self.calls: list[tuple[str, str]] = []
        """(verb, path) of every call, in order."""
        self._versions = itertools.count(1)

    # --- set-up and inspection (not API calls) -------------------------------------------

    def put(self, path: str, obj: Obj) -> Obj:
        """Store ``obj`` at its collection ``path`` as is (a resourceVersion added)."""
        base, namespace, resource, _, _ = _split(path)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if namespace:
            meta["namespace"] = namespace
        meta.setdefault("uid", f"uid-{resource}-{namespace}-{meta['name']}")
        meta["resourceVersion"] = str(next(self._versions))
        self.objects.setdefault((base, resource), {})[(namespace, meta["name"])] = obj
        return obj

    def peek(self, path: str) -> Obj | None:
        base, namespace, resource, name, _ = _split(path)
        return self.objects.get((base, resource), {}).get((namespace, name))

    def items(self, path: str) -> list[Obj]:
        base, namespace, resource, _, _ = _split(path)
        found = self.objects.get((base, resource), {})
        return [o for (ns, _), o in sorted(found.items()) if not namespace or ns == namespace]

    def events(self, reason: str = "") -> list[Obj]:
        out = []
        for (_, resource), objs in self.objects.items():
            if resource == "events":
                out += [e for e in objs.values() if not reason or e["reason"] == reason]
        return out

    # --- the Kube calls ------------------------------------------------------------------

    def list(self, path: str, *, label_selector: str = "", field_selector: str = "") -> list[Obj]:
        self.calls.append(("list", path))
        return [
            copy.deepcopy(o)
            for o in self.items(path)
            if _matches_labels(o, label_selector) and _matches_fields(o, field_selector)
        ]

    def get(self, path: str) -> Obj | None:
        self.calls.append(("get", path))
        obj = self.peek(path)
        return copy.deepcopy(obj) if obj is not None else None

    def create(self, path: str, body: Obj) -> Obj:
        self.calls.append(("create", path))
        base, namespace, resource, _, sub = _split(path)
        if sub == "eviction":  # the Eviction API: the pod goes (no budgets here)
            self.delete(path.rsplit("/", 1)[0])
            return copy.deepcopy(body)
        key = (namespace, body["metadata"]["name"])
        if key in self.objects.get((base, resource), {}):
            raise ApiError(409, "already exists", reason="AlreadyExists", path=path)
        return copy.deepcopy(self.put(path, body))

    def create_or_get(self, path: str, body: Obj) -> tuple[Obj, bool]:
        try:
            return self.create(path, body), True
        except ApiError:
            existing = self.get(f"{path}/{body['metadata']['name']}")
            assert existing is not None
            return existing, False

    def _write(self, path: str, obj: Obj) -> Obj:
        if obj.get("spec", {}).get("unschedulable") is False:
            del obj["spec"]["unschedulable"]  # omitempty, as the API server stores it
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        base, namespace, resource, name, _ = _split(path)
        self.objects[(base, resource)][(namespace, name)] = obj
        return copy.deepcopy(obj)

    def merge_patch(self, path: str, patch: Obj) -> Obj:
        self.calls.append(("merge_patch", path))
        obj = self.peek(path)
        if obj is None:
            raise ApiError(404, "not found", reason="NotFound", path=path)
        seen = (patch.get("metadata") or {}).get("resourceVersion")
        if seen is not None and seen != obj["metadata"]["resourceVersion"]:
            raise ApiError(409, "the object has been modified", reason="Conflict", path=path)
        obj = copy.deepcopy(obj)
        if _split(path)[4] == "status":
            merge(obj.setdefault("status", {}), patch.get("status") or {})
        else:
            merge(obj, patch)
        return self._write(path, obj)

    def json_patch(self, path: str, ops: list[Obj]) -> Obj:
        self.calls.append(("json_patch", path))
        obj = self.peek(path)
        if obj is None:
            raise ApiError(404, "not found", reason="NotFound", path=path)
        return self._write(path, json_patch(obj, ops))

    def delete(self, path: str, *, propagation: str = "Background") -> bool:
        del propagation
        self.calls.append(("delete", path))
        base, namespace, resource, name, _ = _split(path)
        return self.objects.get((base, resource), {}).pop((namespace, name), None) is not None
