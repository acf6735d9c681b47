"""The watch-fed object cache: newer versions win, deletions stick, listings heal."""

from __future__ import annotations

from controller.cache import ObjectCache


def obj(uid: str, rv: int, **extra: object) -> dict:
    return {"metadata": {"uid": uid, "name": uid, "resourceVersion": str(rv)}, **extra}


def names(cache: ObjectCache, kind: str = "Node") -> dict[str, str]:
    return {o["metadata"]["uid"]: o["metadata"]["resourceVersion"] for o in cache.items(kind)}


def test_a_late_event_never_replaces_a_newer_version():
    cache = ObjectCache()
    cache.observe("Node", "MODIFIED", obj("a", 5))
    cache.observe("Node", "MODIFIED", obj("a", 3))
    assert names(cache) == {"a": "5"}


def test_our_own_write_is_seen_before_its_watch_event():
    cache = ObjectCache()
    cache.observe("DLJob", "ADDED", obj("j", 1, status={}))
    cache.upsert("DLJob", obj("j", 2, status={"phase": "Admitted"}))
    cache.observe("DLJob", "MODIFIED", obj("j", 1, status={}))  # the stale event, late
    assert cache.items("DLJob")[0]["status"] == {"phase": "Admitted"}


def test_a_listing_replaces_the_cache_but_keeps_what_changed_since():
    cache = ObjectCache()
    cache.observe("Node", "ADDED", obj("gone", 1))
    cache.observe("Node", "MODIFIED", obj("kept", 9))
    cache.replace("Node", [obj("kept", 7), obj("new", 8)])
    assert names(cache) == {"kept": "9", "new": "8"}


def test_a_listing_taken_before_a_deletion_does_not_bring_the_object_back():
    cache = ObjectCache()
    cache.observe("Node", "ADDED", obj("a", 1))
    cache.observe("Node", "DELETED", obj("a", 4))
    cache.replace("Node", [obj("a", 3)])
    assert names(cache) == {}


def test_a_kind_is_synced_only_for_the_resync_period_after_a_listing():
    now = [100.0]
    cache = ObjectCache(clock=lambda: now[0])
    assert not cache.synced("Node", 60)
    cache.replace("Node", [])
    assert cache.synced("Node", 60)
    now[0] = 161.0
    assert not cache.synced("Node", 60)
