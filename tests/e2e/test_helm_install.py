"""`helm install`, `upgrade` and `uninstall` of the chart against a real API server, and what
the controller's ServiceAccount may do there (`kubectl auth can-i`).

A cluster of its own (etcd and kube-apiserver only): the session's `kube_cluster` has the
CRDs installed already, and here Helm must be the one that creates them. Nothing in these
tests needs pods to run; running the controller under the chart's RBAC is
tests/e2e/test_helm_controller.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helm"))

from chart_harness import CHART, helm_on, manifest_objects

from controller.devcluster import DevCluster, DevClusterError, find_bin_dir, wait_until

pytestmark = pytest.mark.e2e

CRDS = {"dljobs.dlscaler.io", "dlservices.dlscaler.io", "nodepools.dlscaler.io"}
POOL = {"provider": "kwok", "gpuType": "a100", "gpusPerNode": 8, "maxNodes": 2,
        "pricePerHour": 1.0}  # fmt: skip
Key = tuple[str, str, str]
"""(resource, namespace, name) of an object in the cluster."""


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    try:
        cluster = DevCluster(
            workdir=tmp_path_factory.mktemp("helm-cluster"),
            bin_dir=find_bin_dir(),
            components=("etcd", "kube-apiserver"),
        )
        cluster.start()
    except DevClusterError as err:
        pytest.fail(f"the API server for the Helm tests did not start: {err}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


def helm(cluster: DevCluster, *args: str, check: bool = True) -> Any:
    return helm_on(cluster.kubeconfig, *args, check=check)


def values_args(tmp: Path, name: str, values: dict[str, Any]) -> list[str]:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(values))  # JSON is YAML: no float surprises
    return ["-f", str(path)]


def snapshot(cluster: DevCluster) -> set[Key]:
    """Every object of every listable resource, except Events (they expire by themselves)."""
    names = cluster.kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
    names = [n for n in names if n not in ("events", "events.events.k8s.io")]
    items = json.loads(cluster.kubectl("get", ",".join(names), "-A", "-o", "json").stdout)
    keys = set()
    for item in items["items"]:
        group = item["apiVersion"].rpartition("/")[0]
        meta = item["metadata"]
        keys.add((f"{item['kind']}.{group}", meta.get("namespace", ""), meta["name"]))
    return keys


def crds_present(cluster: DevCluster) -> set[str]:
    out = cluster.kubectl("get", "crd", "-o", "name").stdout.split()
    return {n.removeprefix("customresourcedefinition.apiextensions.k8s.io/") for n in out} & CRDS


def delete_crds(cluster: DevCluster) -> None:
    """What docs/install.md tells users to do to remove the CRDs after uninstalling."""
    cluster.kubectl("delete", "crd", *sorted(CRDS), "--ignore-not-found", "--wait=true",
                    timeout_s=120)  # fmt: skip
    wait_until(lambda: not crds_present(cluster), 60, "the CRDs to be deleted")


def object_key(doc: dict[str, Any], namespace: str) -> tuple[str, str, str]:
    scoped = doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "NodePool")
    return doc["kind"], namespace if scoped else "", doc["metadata"]["name"]


def exists(cluster: DevCluster, kind: str, namespace: str, name: str) -> bool:
    args = ["get", kind, name, "-o", "name"] + (["-n", namespace] if namespace else [])
    return cluster.kubectl(*args, check=False).returncode == 0


# --- install ----------------------------------------------------------------------------


@dataclass
class Release:
    name: str
    namespace: str
    objects: list[dict[str, Any]]
    install_output: str


@pytest.fixture(scope="module")
def release(
    bare_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    """The chart with its defaults plus one NodePool, installed into a cluster without the
    CRDs."""
    if crds_present(bare_cluster):
        delete_crds(bare_cluster)  # another test's leftovers: start from a cluster without them
    tmp = tmp_path_factory.mktemp("release")
    proc = helm(
        bare_cluster, "install", "dlscaler", str(CHART), "-n", "dlscaler-system",
        "--create-namespace", *values_args(tmp, "v", {"nodePools": [{"name": "a100", **POOL}]}),
    )  # fmt: skip
    objects = manifest_objects(bare_cluster.kubeconfig, "dlscaler", "dlscaler-system")
    yield Release("dlscaler", "dlscaler-system", objects, proc.stdout + proc.stderr)
    helm(bare_cluster, "uninstall", "dlscaler", "-n", "dlscaler-system", check=False)


def test_install_creates_the_crds_and_every_object(
    bare_cluster: DevCluster, release: Release
) -> None:
    assert crds_present(bare_cluster) == CRDS
    bare_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                         *[f"crd/{c}" for c in sorted(CRDS)])  # fmt: skip
    kinds = {d["kind"] for d in release.objects}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
            "RoleBinding", "ConfigMap", "Lease", "PodDisruptionBudget", "Service",
            "NodePool"} <= kinds  # fmt: skip
    for doc in release.objects:
        kind, namespace, name = object_key(doc, release.namespace)
        assert exists(bare_cluster, kind, namespace, name), f"{kind} {namespace}/{name} missing"
    pool = bare_cluster.get_json("nodepool", "a100")
    assert pool["spec"]["gpusPerNode"] == 8
    assert pool["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert "dlscaler" in release.install_output  # NOTES.txt rendered
    assert "kubectl -n dlscaler-system get lease dlscaler-leader" in release.install_output


# --- what the ServiceAccount may do ------------------------------------------------------

SA = "system:serviceaccount:dlscaler-system:dlscaler"
NS = "dlscaler-system"

# (verb, resource[/subresource], namespace or "" for all/cluster, resource name, why)
ALLOWED = [
    ("list", "dljobs.dlscaler.io", "", "", "the loop lists every DLJob"),
    ("watch", "dljobs.dlscaler.io", "", "", "kopf watches DLJobs"),
    ("patch", "dljobs.dlscaler.io/status", "team-a", "", "phase, conditions, worker states"),
    ("delete", "dljobs.dlscaler.io", "team-a", "", "ttlSecondsAfterFinished"),
    ("watch", "dlservices.dlscaler.io", "", "", "kopf watches DLServices"),
    ("patch", "dlservices.dlscaler.io", "team-a", "", "replicas from the measured load"),
    ("patch", "dlservices.dlscaler.io/status", "team-a", "", "replicas, load, conditions"),
    ("create", "deployments.apps", "team-a", "", "a DLService's Deployment"),
    ("patch", "deployments.apps", "team-a", "", "its replicas and template"),
    ("list", "nodepools.dlscaler.io", "", "", "the loop lists NodePools"),
    ("watch", "nodepools.dlscaler.io", "", "", "kopf watches NodePools"),
    ("patch", "nodepools.dlscaler.io/status", "", "", "target, ready, lastError"),
    ("create", "pods", "team-a", "", "a gang's workers"),
    ("delete", "pods", "team-a", "", "gang restarts"),
    ("list", "pods", "", "", "capacity held by every pod"),
    ("watch", "pods", "", "", "kopf watches worker pods"),
    ("create", "pods/eviction", "team-a", "", "draining a node"),
    ("create", "services", "team-a", "", "a gang's headless Service"),
    ("list", "nodes", "", "", "which nodes are ready"),
    ("watch", "nodes", "", "", "kopf watches nodes"),
    ("patch", "nodes", "", "", "cordon before removal"),
    ("create", "events", "team-a", "", "Events on DLJobs"),
    ("create", "events", "default", "", "Events on NodePools"),
    ("get", "leases.coordination.k8s.io", NS, "dlscaler-leader", "leader election"),
    ("update", "leases.coordination.k8s.io", NS, "dlscaler-leader", "renewing the Lease"),
    ("create", "leases.coordination.k8s.io", NS, "", "re-creating a deleted Lease"),
    ("get", "configmaps", NS, "dlscaler-state", "loading the demand history"),
    ("patch", "configmaps", NS, "dlscaler-state", "saving the demand history"),
    ("get", "configmaps", NS, "dlscaler-state-runtimes", "loading the finished jobs"),
    ("patch", "configmaps", NS, "dlscaler-state-runtimes", "saving the finished jobs"),
]
DENIED = [
    ("get", "secrets", "", "", "no Secret access at all"),
    ("list", "secrets", NS, "", "not even in its own namespace"),
    ("get", "secrets", "team-a", "", "nor in users' namespaces"),
    ("create", "nodes", "", "", "only kwok pools create Nodes (rbac.kwokNodes)"),
    ("delete", "nodes", "", "", "cloud pools delete instances, not Node objects"),
    ("delete", "nodepools.dlscaler.io", "", "", "NodePools are the user's"),
    ("create", "dljobs.dlscaler.io", "team-a", "", "DLJobs are the user's"),
    ("update", "configmaps", NS, "dlscaler-policy", "the controller never rewrites its policy"),
    ("update", "configmaps", NS, "dlscaler-state", "patched, never replaced (Helm's labels)"),
    ("get", "configmaps", "team-a", "", "no other ConfigMaps"),
    ("update", "leases.coordination.k8s.io", NS, "another-lease", "only its own Lease"),
    ("update", "leases.coordination.k8s.io", "kube-node-lease", "node-1", "nor node leases"),
    ("create", "pods/exec", "team-a", "", "never runs commands in pods"),
    ("get", "nodes/proxy", "", "", "never reaches kubelets"),
    ("create", "serviceaccounts/token", NS, "dlscaler", "cannot mint tokens"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", "", "", "cannot grant itself"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", "", "", "cannot escalate"),
    ("impersonate", "serviceaccounts", NS, "", "cannot impersonate"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", "", "", "leaves CRDs alone"),
    ("delete", "namespaces", "", "", "leaves namespaces alone"),
    ("patch", "dljobs.dlscaler.io", "team-a", "", "a DLJob's spec is the user's"),
    ("update", "nodepools.dlscaler.io", "", "", "so is a NodePool's"),
    ("delete", "deployments.apps", "team-a", "", "a DLService's Deployment goes with it (GC)"),
    ("delete", "services", "team-a", "", "Services go with their owner (GC)"),
]


def can_i(cluster: DevCluster, verb: str, resource: str, namespace: str, name: str) -> bool:
    res, _, sub = resource.partition("/")
    target = f"{res}/{name}" if name else res
    args = ["auth", "can-i", verb, target, f"--as={SA}"]
    args += [f"--subresource={sub}"] if sub else []
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    proc = cluster.kubectl(*args, check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {proc.stdout} {proc.stderr}"
    return answer == "yes"


def _id(case: tuple[str, ...]) -> str:
    verb, resource, namespace, name, _ = case
    return f"{verb}-{resource}{'-' + name if name else ''}-{namespace or 'all'}"


@pytest.mark.parametrize("case", ALLOWED, ids=[_id(c) for c in ALLOWED])
def test_service_account_may(
    bare_cluster: DevCluster, release: Release, case: tuple[str, str, str, str, str]
) -> None:
    verb, resource, namespace, name, why = case
    assert can_i(bare_cluster, verb, resource, namespace, name), f"needed for: {why}"


@pytest.mark.parametrize("case", DENIED, ids=[_id(c) for c in DENIED])
def test_service_account_may_not(
    bare_cluster: DevCluster, release: Release, case: tuple[str, str, str, str, str]
) -> None:
    verb, resource, namespace, name, why = case
    assert not can_i(bare_cluster, verb, resource, namespace, name), why


def test_kwok_nodes_value_grants_node_create_and_delete_only(
    bare_cluster: DevCluster, release: Release, tmp_path: Path
) -> None:
    def upgrade(kwok: bool) -> None:
        helm(bare_cluster, "upgrade", release.name, str(CHART), "-n", release.namespace,
             "--reuse-values", "--set", f"rbac.kwokNodes={str(kwok).lower()}")  # fmt: skip

    upgrade(True)
    try:
        assert can_i(bare_cluster, "create", "nodes", "", "")
        assert can_i(bare_cluster, "delete", "nodes", "", "")
        assert not can_i(bare_cluster, "get", "secrets", "", "")
    finally:
        upgrade(False)
    assert not can_i(bare_cluster, "create", "nodes", "", "")


# --- upgrade and uninstall ----------------------------------------------------------------


def test_upgrade_then_uninstall_leaves_only_the_crds(
    bare_cluster: DevCluster, tmp_path: Path
) -> None:
    """A release of its own: Helm's upgrade keeps what the controller wrote, prunes what the
    values no longer ask for; uninstall leaves nothing but the CRDs (docs/install.md)."""
    ns, name = "dlscaler-lifecycle", "life"
    before = snapshot(bare_cluster)
    had_crds = crds_present(bare_cluster)
    first = {"nodePools": [{"name": "life-a", **POOL}], "policyConfig": {"policy": "reactive"}}
    helm(bare_cluster, "install", name, str(CHART), "-n", ns, "--create-namespace",
         *values_args(tmp_path, "first", first))  # fmt: skip
    full = f"{name}-dlscaler"

    # What the controller writes at runtime: the Lease holder and the demand history.
    bare_cluster.kubectl("patch", "lease", f"{full}-leader", "-n", ns, "--type=merge", "-p",
                         json.dumps({"spec": {"holderIdentity": "pod-a_1234",
                                              "leaseDurationSeconds": 15}}))  # fmt: skip
    bare_cluster.kubectl("patch", "configmap", f"{full}-state", "-n", ns, "--type=merge", "-p",
                         json.dumps({"data": {"demand": '{"version":1}'}}))  # fmt: skip

    second = {
        "replicaCount": 1,
        "leaderElection": {"enabled": True},
        "nodePools": [{"name": "life-b", **POOL, "maxNodes": 3}],
        "policyConfig": {"policy": "predictive", "idleTimeoutSeconds": 300},
    }
    helm(bare_cluster, "upgrade", name, str(CHART), "-n", ns,
         *values_args(tmp_path, "second", second))  # fmt: skip
    assert not exists(bare_cluster, "nodepool", "", "life-a"), "a NodePool left the values"
    assert bare_cluster.get_json("nodepool", "life-b")["spec"]["maxNodes"] == 3
    assert not exists(bare_cluster, "pdb", ns, full), "one replica: no PDB"
    deploy = bare_cluster.get_json("deployment", full, "-n", ns)
    assert deploy["spec"]["replicas"] == 1
    policy = bare_cluster.get_json("configmap", f"{full}-policy", "-n", ns)["data"]["policy.yaml"]
    assert "policy: predictive" in policy and "idleTimeoutSeconds: 300" in policy
    lease = bare_cluster.get_json("lease", f"{full}-leader", "-n", ns)
    assert lease["spec"]["holderIdentity"] == "pod-a_1234", "upgrade must not reset the Lease"
    state = bare_cluster.get_json("configmap", f"{full}-state", "-n", ns)
    assert state["data"] == {"demand": '{"version":1}'}, "upgrade must keep the demand history"

    helm(bare_cluster, "uninstall", name, "-n", ns, "--wait", "--timeout=60s")
    assert crds_present(bare_cluster) == CRDS, "Helm never deletes CRDs"
    after = snapshot(bare_cluster)
    documented = {("Namespace.", "", ns)}  # made by --create-namespace, which Helm never deletes
    documented |= {("CustomResourceDefinition.apiextensions.k8s.io", "", c) for c in CRDS}
    # The API server registers the CRDs' group version by itself, and drops it with them.
    documented.add(("APIService.apiregistration.k8s.io", "", "v1alpha1.dlscaler.io"))
    left = after - before - documented
    assert not left, f"left behind by helm uninstall: {sorted(left)}"
    gone = before - after
    assert not gone, f"removed although not the release's: {sorted(gone)}"
    if not had_crds:
        delete_crds(bare_cluster)  # as docs/install.md says, and for the next test's install
