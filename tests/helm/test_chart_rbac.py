"""The chart's RBAC, statically: least privilege in the rendered ClusterRole and Role.

What the rules allow in a real API server, and that the controller needs no more, is
proved in tests/e2e/test_helm_rbac.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from chart_harness import CLOUD_VALUES, Doc, only, render

DANGEROUS_VERBS = {"*", "escalate", "bind", "impersonate", "deletecollection"}
DANGEROUS_RESOURCES = {
    "secrets",
    "pods/exec",
    "pods/attach",
    "pods/portforward",
    "nodes/proxy",
    "serviceaccounts/token",
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
    "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations",
}


def rules(docs: list[Doc]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (d["kind"], rule)
        for d in docs
        if d["kind"] in ("ClusterRole", "Role")
        for rule in d["rules"]
    ]


def grants(docs: list[Doc], kind: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples a role grants (resourceNames ignored)."""
    return {
        (group, resource, verb)
        for k, rule in rules(docs)
        if k == kind
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("args", [[], ["--set", "rbac.kwokNodes=true"],
                                  *(["-f", str(p)] for p in CLOUD_VALUES.values())])  # fmt: skip
def test_no_wildcards_and_nothing_dangerous(args: list[str]) -> None:
    found = rules(render(*args))
    assert found
    for kind, rule in found:
        for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert "*" not in rule.get(key, []), f"{kind} rule {rule} uses a wildcard in {key}"
        assert not set(rule["verbs"]) & DANGEROUS_VERBS, f"{kind} rule {rule}"
        assert not set(rule["resources"]) & DANGEROUS_RESOURCES, f"{kind} rule {rule}"
        assert "nonResourceURLs" not in rule


def test_no_secret_access_anywhere() -> None:
    for args in ([], ["--set", "rbac.kwokNodes=true"]):
        for _, rule in rules(render(*args)):
            assert not any(r.split("/")[0] == "secrets" for r in rule["resources"]), rule


def test_cluster_role_grants_what_the_controller_uses() -> None:
    granted = grants(render(), "ClusterRole")
    watch = {"list", "watch"}
    for resource in ("dljobs", "dlservices", "nodepools"):
        assert {("dlscaler.io", resource, v) for v in watch} <= granted
    for resource in ("dljobs/status", "dlservices/status", "nodepools/status"):
        assert ("dlscaler.io", resource, "patch") in granted
    assert ("dlscaler.io", "dlservices", "patch") in granted  # spec.replicas, from the load
    assert {("apps", "deployments", v) for v in ("get", "list", "create", "patch")} <= granted
    assert {("", "pods", v) for v in (*watch, "get", "create", "delete")} <= granted
    assert ("", "pods/eviction", "create") in granted
    assert {("", "nodes", v) for v in (*watch, "patch")} <= granted
    assert ("", "events", "create") in granted
    # Not by default: creating and deleting Node objects (kwok pools only).
    assert ("", "nodes", "create") not in granted
    assert ("", "nodes", "delete") not in granted
    # Specs are the users': the controller writes status only, and deletes only finished
    # DLJobs (ttlSecondsAfterFinished).
    for resource in ("dljobs", "nodepools"):
        assert ("dlscaler.io", resource, "patch") not in granted
    for resource in ("dljobs", "dlservices", "nodepools"):
        assert ("dlscaler.io", resource, "update") not in granted
    assert ("dlscaler.io", "nodepools", "delete") not in granted
    assert ("dlscaler.io", "dlservices", "delete") not in granted


def test_kwok_nodes_switch_adds_exactly_node_create_and_delete() -> None:
    plain = grants(render(), "ClusterRole")
    kwok = grants(render("--set", "rbac.kwokNodes=true"), "ClusterRole")
    assert kwok - plain == {("", "nodes", "create"), ("", "nodes", "delete")}


def test_namespaced_role_is_limited_to_the_lease_and_state_configmaps() -> None:
    docs = render()
    role = only(docs, "Role")
    assert role["metadata"]["namespace"] == "dlscaler-system"
    by_resource: dict[str, list[dict[str, Any]]] = {}
    for rule in role["rules"]:
        for resource in rule["resources"]:
            by_resource.setdefault(resource, []).append(rule)
    assert set(by_resource) == {"leases", "configmaps"}
    config_maps = ["dlscaler-state", "dlscaler-state-runtimes"]
    for resource, names in (("leases", ["dlscaler-leader"]), ("configmaps", config_maps)):
        for rule in by_resource[resource]:
            if rule["verbs"] == ["create"]:
                continue  # RBAC cannot limit create by name
            assert rule.get("resourceNames") == names, rule
            assert set(rule["verbs"]) <= {"get", "update", "patch"}
    # The ConfigMaps are merge-patched (Helm's labels stay), never replaced.
    assert {v for r in by_resource["configmaps"] for v in r["verbs"]} == {"get", "patch", "create"}
    # The objects those names refer to are the chart's own, and carry no data for Helm to
    # reconcile: what the controller writes there survives upgrades.
    only(docs, "Lease", "dlscaler-leader")
    for name in config_maps:
        assert "data" not in only(docs, "ConfigMap", name)


def test_bindings_name_only_the_controller_service_account() -> None:
    docs = render(release="ml", namespace="ml-system")
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = only(docs, kind)
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": only(docs, role_kind)["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "ml-dlscaler", "namespace": "ml-system"}
        ]


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    kinds = {d["kind"] for d in render("--set", "rbac.create=false")}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
