"""The store both ConfigMaps the leader keeps (demand history, finished jobs) are written
through: only its own keys change, a write by someone else in between is a 409 that the next
write recovers from, and a deleted ConfigMap is created again."""

from __future__ import annotations

from typing import cast

import pytest
from ctl_memory_api import MemoryApi

from controller.configmap_store import ConfigMapStore
from controller.kube import ApiError, Kube, core_path

NS = "dlscaler-system"
COLLECTION = core_path("configmaps", NS)


def helm_made(api: MemoryApi) -> None:
    """The chart's ConfigMap: labels and annotations Helm relies on, no data."""
    api.put(COLLECTION, {"metadata": {
        "name": "cm", "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": "dlscaler"},
    }})  # fmt: skip


def test_a_write_patches_its_keys_and_leaves_the_rest_alone() -> None:
    api = MemoryApi()
    helm_made(api)
    api.put(COLLECTION, {**api.items(COLLECTION)[0], "data": {"other": "kept"}})
    store = ConfigMapStore(cast(Kube, api), NS, "cm")
    assert store.load() == {"other": "kept"}
    store.save({"mine": "1"})
    store.save({"mine": "2"})
    obj = api.peek(store.path)
    assert obj is not None
    assert obj["data"] == {"other": "kept", "mine": "2"}
    assert obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "Helm"}
    assert obj["metadata"]["annotations"] == {"meta.helm.sh/release-name": "dlscaler"}
    assert ("create", COLLECTION) not in api.calls


def test_a_write_by_someone_else_is_a_conflict_and_the_next_write_succeeds() -> None:
    api = MemoryApi()
    helm_made(api)
    store = ConfigMapStore(cast(Kube, api), NS, "cm")
    store.load()
    other = ConfigMapStore(cast(Kube, api), NS, "cm")
    other.load()
    other.save({"mine": "theirs"})
    with pytest.raises(ApiError) as err:
        store.save({"mine": "ours"})
    assert err.value.conflict
    obj = api.peek(store.path)
    assert obj is not None and obj["data"] == {"mine": "theirs"}  # not overwritten blindly
    store.save({"mine": "ours"})  # now based on their version
    obj = api.peek(store.path)
    assert obj is not None and obj["data"] == {"mine": "ours"}


def test_a_missing_configmap_is_created_and_a_deleted_one_again() -> None:
    api = MemoryApi()
    store = ConfigMapStore(cast(Kube, api), NS, "cm")
    assert store.load() == {}
    store.save({"mine": "1"})
    obj = api.peek(store.path)
    assert obj is not None and obj["data"] == {"mine": "1"}
    assert obj["metadata"]["labels"] == {"app.kubernetes.io/part-of": "dlscaler"}
    api.delete(store.path)
    with pytest.raises(ApiError) as err:
        store.save({"mine": "2"})
    assert err.value.not_found
    store.save({"mine": "2"})
    obj = api.peek(store.path)
    assert obj is not None and obj["data"] == {"mine": "2"}
