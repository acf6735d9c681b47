"""The controller as the chart installs it, under the chart's RBAC alone.

`helm install` into the control plane (a kwok NodePool among the values), then the
controller is started outside the cluster exactly as the Deployment would start it: the
container's arguments and environment, the policy file from the mounted ConfigMap, and the
ServiceAccount's own token (`kubectl create token`) instead of an admin certificate.

1. On the session's cluster: the DLJob scenario of the operator's e2e tests must pass (the
   pool scales to exactly the gang's nodes, the job runs and succeeds, the pool returns to
   zero) with no request refused; then `helm uninstall` must leave nothing behind.
2. On a cluster of its own with the API server's audit log on: DLJobs (one with a TTL, one
   failing into gang restarts) and a load-scaled DLService; every rule the chart grants
   must show up in the audit log of the ServiceAccount's requests, or have a stated reason
   (RARELY_USED): the chart grants exactly what the controller uses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from op_fixtures import cluster_fixture, scope_fixture  # noqa: F401 - fixtures
from op_harness import (
    REPO_ROOT,
    Cluster,
    ControllerProcess,
    NodeRecorder,
    Scope,
    dljob,
    dump,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helm"))

from chart_harness import CHART, helm_on, service_account_kubeconfig

from controller.devcluster import DevCluster, DevClusterError, find_bin_dir, wait_until

RELEASE = "dlscaler"


def snapshot(dev: DevCluster, namespace: str) -> set[tuple[str, str, str]]:
    """Every cluster-scoped object, and every object in ``namespace`` (not Events: they
    expire by themselves)."""
    names = dev.kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
    names = [n for n in names if n not in ("events", "events.events.k8s.io")]
    cluster_scoped = set(
        dev.kubectl("api-resources", "--verbs=list", "--namespaced=false", "-o", "name")
        .stdout.split()
    )  # fmt: skip
    keys = set()
    for scope_names, args in (
        ([n for n in names if n in cluster_scoped], []),
        ([n for n in names if n not in cluster_scoped], ["-n", namespace]),
    ):
        items = json.loads(dev.kubectl("get", ",".join(scope_names), *args, "-o", "json").stdout)
        for item in items["items"]:
            meta = item["metadata"]
            keys.add((item["kind"], meta.get("namespace", ""), meta["name"]))
    return keys


class InstalledController(ControllerProcess):
    """`dlscaler run` with the Deployment's own arguments and environment, authenticated
    with the ServiceAccount's token."""

    def __init__(
        self,
        dev: DevCluster,
        scope: Scope,
        log_dir: Path,
        *,
        deployment: dict[str, Any],
        config_maps: dict[str, dict[str, str]],
        kubeconfig: Path,
    ) -> None:
        super().__init__(dev, scope, log_dir, name="installed")
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        namespace = deployment["metadata"]["namespace"]
        self.env = {}
        for var in container.get("env", []):
            if "value" in var:
                self.env[var["name"]] = var["value"]
            elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == (
                "metadata.namespace"
            ):
                self.env[var["name"]] = namespace
            elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
                self.env[var["name"]] = f"{deployment['metadata']['name']}-outside"
        # What the kubelet would mount: each ConfigMap volume as a directory of its keys.
        mounts = {}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in container["volumeMounts"]:
            cm = volumes[mount["name"]].get("configMap")
            if cm is None:
                continue
            local = log_dir / f"mount-{mount['name']}"
            local.mkdir(exist_ok=True)
            for key, text in config_maps[cm["name"]].items():
                (local / key).write_text(text)
            mounts[mount["mountPath"]] = str(local)
        args = []
        for given in container["args"]:
            arg = re.sub(r"\$\((\w+)\)", lambda m: self.env[m[1]], given)
            for mount_path, local_path in mounts.items():
                arg = arg.replace(f"={mount_path}/", f"={local_path}/")
            if arg.startswith("--listen="):
                arg = f"--listen=127.0.0.1:{self.port}"  # servers only on loopback here
            args.append(arg)
        assert args[0] == "run", container["args"]
        # In a pod the token comes from the mounted ServiceAccount volume; here, through a
        # kubeconfig holding the same ServiceAccount's token and nothing else.
        self.argv = [sys.executable, "-m", "dlscaler.cli", *args, f"--kubeconfig={kubeconfig}"]

    def start(self) -> InstalledController:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env.update({k: v for k, v in self.env.items() if k != "HOME"})
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env
            )
        wait_until(lambda: self.http("/healthz")[0] == 200 or not self.alive(), 30,
                   "the installed controller to serve /healthz")  # fmt: skip
        assert self.alive(), f"the controller exited:\n{self.log_tail()}"
        return self


@pytest.fixture
def release_namespace(kube_cluster: DevCluster) -> Iterator[str]:
    name = f"dlscaler-e2e-{uuid.uuid4().hex[:5]}"
    kube_cluster.kubectl("create", "namespace", name)
    wait_until(
        lambda: kube_cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode
        == 0
        and kube_cluster.kubectl("get", "cm", "kube-root-ca.crt", "-n", name,
                                 check=False).returncode == 0,
        30,
        f"namespace {name} to be set up",
    )  # fmt: skip
    yield name
    helm_on(kube_cluster.kubeconfig, "uninstall", RELEASE, "-n", name, check=False)
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_the_installed_controller_runs_a_dljob_under_the_charts_rbac_alone(
    kube_cluster: DevCluster,
    cluster: Cluster,
    scope: Scope,
    release_namespace: str,
    tmp_path: Path,
) -> None:
    ns = release_namespace
    pool = {
        "name": scope.pool_name(),
        "provider": "kwok",
        "gpuType": scope.gpu_type,
        "gpusPerNode": 8,
        "minNodes": 0,
        "maxNodes": 4,
        "pricePerHour": 10.0,
        "provisioningDelaySeconds": 2,
        "idleTimeoutSeconds": 4,
    }
    values = {
        "rbac": {"kwokNodes": True},  # the kwok pool creates and deletes fake Nodes
        "nodePools": [pool],
        "controller": {
            # This test's objects only (the cluster is shared): the chart's own NodePools.
            "watchNamespaces": [scope.namespace],
            "nodePoolSelector": f"app.kubernetes.io/instance={RELEASE}",
            # Test speed.
            "reconcileIntervalSeconds": 1,
            "backoffSeconds": 20,
            "maxProvisioningSeconds": 30,
            "extraArgs": ["--min-pass-gap=0.2", "--call-timeout=10", "--history-step=1",
                          "--persist-every=1"],
        },
        "leaderElection": {"leaseDurationSeconds": 5, "renewIntervalSeconds": 1},
        # The in-cluster replicas have no image to run here: keep them unscheduled.
        "nodeSelector": {"dlscaler.io/e2e-no-such-node": "true"},
    }  # fmt: skip
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(values))
    before = snapshot(kube_cluster, ns)

    helm_on(kube_cluster.kubeconfig, "install", RELEASE, str(CHART), "-n", ns,
            "-f", str(values_file))  # fmt: skip
    deployment = kube_cluster.get_json("deployment", RELEASE, "-n", ns)
    config_maps = {
        name: kube_cluster.get_json("configmap", name, "-n", ns).get("data") or {}
        for name in (f"{RELEASE}-policy",)
    }
    sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    token = kube_cluster.kubectl("create", "token", sa, "-n", ns, "--duration=1h").stdout.strip()
    kubeconfig = service_account_kubeconfig(kube_cluster.kubeconfig, token, ns,
                                            tmp_path / "sa.kubeconfig")  # fmt: skip
    whoami = subprocess.run(
        [str(kube_cluster.bin("kubectl")), f"--kubeconfig={kubeconfig}", "auth", "whoami",
         "-o", "jsonpath={.status.userInfo.username}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert whoami == f"system:serviceaccount:{ns}:{sa}"

    ctl = InstalledController(
        kube_cluster, scope, tmp_path, deployment=deployment, config_maps=config_maps,
        kubeconfig=kubeconfig,
    ).start()  # fmt: skip
    try:
        # The operator's first e2e scenario (test_operator_scaling.py), unchanged.
        cluster.apply(dljob(scope, "train", workers=2, gpus_per_worker=8, run_s=4))
        nodes = NodeRecorder(cluster)
        nodes.wait(lambda: cluster.pool_status().get("target") == 2, 60, "the pool's target 2")
        nodes.wait(lambda: cluster.job_phase("train") == "Running", 60, "the job to run")
        pods = cluster.pods("train")
        assert len(pods) == 2
        bound = {p["spec"]["nodeName"] for p in pods}
        assert bound == {n["metadata"]["name"] for n in cluster.pool_nodes()}, dump(pods)
        nodes.wait(lambda: cluster.job_phase("train") == "Succeeded", 60, "the job to succeed")
        nodes.wait(lambda: not cluster.pool_nodes(), 60, "the pool to return to 0 nodes")
        cluster.wait(lambda: cluster.pool_status().get("target") == 0, 20, "status target 0")
        assert len(nodes.seen) == 2 and nodes.max_live == 2, sorted(nodes.seen)
        reasons = [e["reason"] for e in cluster.events_for("DLJob", "train")]
        assert {"Queued", "Admitted", "Running", "Succeeded"} <= set(reasons), reasons
        assert "ScaledUp" in [e["reason"] for e in cluster.pool_events()]
        assert ctl.leading()
        # The leader wrote its Lease and demand history into the chart's own objects.
        lease = kube_cluster.get_json("lease", f"{RELEASE}-leader", "-n", ns)
        assert lease["spec"]["holderIdentity"]
        state = kube_cluster.get_json("configmap", f"{RELEASE}-state", "-n", ns)
        assert state.get("data", {}).get("demand"), "the demand history was not saved"
    finally:
        ctl.stop()
        log = ctl.log_path.read_text(errors="replace")
        print(log[-6000:])
    denied = [line for line in log.splitlines() if re.search(r"\b403\b|forbidden", line, re.I)]
    assert not denied, "calls the chart's RBAC refused:\n" + "\n".join(denied[:20])

    # Uninstall: nothing of the release may remain (the DLJob is the user's: delete it first,
    # its pods and Service go with it).
    kube_cluster.kubectl("delete", "dljob", "train", "-n", scope.namespace, "--wait=true")
    helm_on(kube_cluster.kubeconfig, "uninstall", RELEASE, "-n", ns, "--wait", "--timeout=120s")
    left: set[tuple[str, str, str]] = set()

    def nothing_left() -> bool:
        nonlocal left
        # Nodes of other tests may come and go meanwhile (the cluster is shared): only this
        # release's pool's nodes count.
        ours = f"kwok-{scope.pool_name()}-"
        left = {
            k for k in snapshot(kube_cluster, ns) - before
            if k[0] != "Node" or k[2].startswith(ours)
        }  # fmt: skip
        return not left

    try:
        wait_until(nothing_left, 60, "the release's objects to be gone")
    except Exception:
        pytest.fail(f"left behind by helm uninstall: {sorted(left)}")


# --- the chart grants nothing the controller does not use ---------------------------------

AUDIT_NS = "dlscaler-audit"
AUDIT_USER = f"system:serviceaccount:{AUDIT_NS}:{RELEASE}"

# Grants the audited run below does not exercise, each with the code path that needs it.
# Any other unused grant fails the test: the chart must not grant what nothing uses.
RARELY_USED = {
    ("", "pods/eviction", "create"): "draining a node that still runs evictable pods",
    ("", "pods", "get"): "a worker pod that already exists (create answered 409)",
    ("", "services", "get"): "a Service that already exists (create answered 409)",
    ("apps", "deployments", "get"): "a Deployment that already exists (create answered 409)",
    ("coordination.k8s.io", "leases", "create"): "the chart's Lease was deleted by hand",
    ("", "configmaps", "create"): "the chart's state ConfigMap was deleted by hand",
}


@dataclass
class AuditedCluster(DevCluster):
    """The control plane with the API server's audit log on, recording every request of the
    controller's ServiceAccount (verb, resource, subresource, response code)."""

    def _apiserver_argv(self, pki: Any) -> list[str]:
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(json.dumps({
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived", "ResponseStarted"],
            "rules": [{"level": "Metadata", "users": [AUDIT_USER]}, {"level": "None"}],
        }))  # fmt: skip
        return [
            *super()._apiserver_argv(pki),
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-mode=blocking",
        ]

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def requests(self) -> list[dict[str, Any]]:
        lines = self.audit_log.read_text().splitlines() if self.audit_log.exists() else []
        return [json.loads(line) for line in lines if line.strip()]


class QueryApi(ThreadingHTTPServer):
    """Prometheus's /api/v1/query on loopback, answering ``value`` to every query."""

    def __init__(self) -> None:
        self.value = 0.0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(
                    {
                        "status": "success",
                        "data": {
                            "resultType": "vector",
                            "result": [{"metric": {}, "value": [0, str(api.value)]}],
                        },
                    }
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        super().__init__(("127.0.0.1", 0), Handler)  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def audited_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditedCluster]:
    """A control plane of its own: audit logging is an API server flag, so the session's
    cluster cannot have it."""
    dev = AuditedCluster(workdir=tmp_path_factory.mktemp("audited"), bin_dir=find_bin_dir())
    try:
        dev.start()
    except DevClusterError as err:
        pytest.fail(f"the audited control plane did not start: {err}", pytrace=False)
    try:
        yield dev
    finally:
        dev.stop()


def test_the_chart_grants_only_what_the_controller_uses(
    audited_cluster: AuditedCluster, tmp_path: Path
) -> None:
    """The installed controller runs a DLJob (with a TTL), a failing DLJob (gang restarts)
    and a load-scaled DLService under the chart's RBAC; the audit log of its requests must
    cover every rule the chart grants, except the few paths listed in RARELY_USED."""
    dev = audited_cluster
    scope = Scope(namespace="team-a")
    dev.kubectl("create", "namespace", scope.namespace)
    wait_until(lambda: dev.kubectl("get", "sa", "default", "-n", scope.namespace,
                                   check=False).returncode == 0, 30, "the default SA")  # fmt: skip
    prometheus = QueryApi()
    threading.Thread(target=prometheus.serve_forever, daemon=True).start()
    pool = {"name": scope.pool_name(), "provider": "kwok", "gpuType": scope.gpu_type,
            "gpusPerNode": 8, "maxNodes": 4, "pricePerHour": 10.0,
            "provisioningDelaySeconds": 2, "idleTimeoutSeconds": 3}  # fmt: skip
    values = {
        "rbac": {"kwokNodes": True},
        "nodePools": [pool],
        "controller": {
            "reconcileIntervalSeconds": 1, "backoffSeconds": 20, "maxProvisioningSeconds": 30,
            "prometheusUrl": prometheus.url, "serviceStabilizationSeconds": 3,
            "extraArgs": ["--min-pass-gap=0.2", "--call-timeout=10", "--history-step=1",
                          "--persist-every=1"],
        },
        "leaderElection": {"leaseDurationSeconds": 5, "renewIntervalSeconds": 1},
        "nodeSelector": {"dlscaler.io/e2e-no-such-node": "true"},
    }  # fmt: skip
    (tmp_path / "values.json").write_text(json.dumps(values))
    helm_on(dev.kubeconfig, "install", RELEASE, str(CHART), "-n", AUDIT_NS, "--create-namespace",
            "-f", str(tmp_path / "values.json"))  # fmt: skip
    deployment = dev.get_json("deployment", RELEASE, "-n", AUDIT_NS)
    policy = dev.get_json("configmap", f"{RELEASE}-policy", "-n", AUDIT_NS)["data"]
    token = dev.kubectl("create", "token", RELEASE, "-n", AUDIT_NS, "--duration=1h").stdout
    kubeconfig = service_account_kubeconfig(dev.kubeconfig, token.strip(), AUDIT_NS,
                                            tmp_path / "sa.kubeconfig")  # fmt: skip
    ctl = InstalledController(dev, scope, tmp_path, deployment=deployment,
                              config_maps={f"{RELEASE}-policy": policy},
                              kubeconfig=kubeconfig).start()  # fmt: skip
    cluster = Cluster(dev, scope)
    try:
        cluster.apply(
            dljob(scope, "train", workers=2, gpus_per_worker=8, run_s=2,
                  runPolicy={"ttlSecondsAfterFinished": 1}),
            dljob(scope, "flaky", workers=1, gpus_per_worker=8, run_s=1, result="Failed",
                  runPolicy={"backoffLimit": 1}),
        )  # fmt: skip
        cluster.wait(lambda: dev.kubectl("get", "dljob", "train", "-n", scope.namespace,
                                         check=False).returncode != 0,
                     90, "the finished DLJob to be deleted after its TTL")  # fmt: skip
        cluster.wait(lambda: cluster.job_phase("flaky") == "Failed", 90, "flaky to fail")
        prometheus.value = 15.0  # two replicas' worth at 10 requests/s each
        cluster.apply(
            {
                "apiVersion": "dlscaler.io/v1alpha1", "kind": "DLService",
                "metadata": {"name": "llm", "namespace": scope.namespace},
                "spec": {"minReplicas": 1, "maxReplicas": 4, "gpusPerReplica": 4,
                         "gpuType": scope.gpu_type,
                         "target": {"requestsPerSecondPerReplica": 10,
                                    "prometheusQuery": "sum(rate(requests_total[1m]))"},
                         "template": {"spec": {"containers": [{"name": "srv",
                                                               "image": "srv:1"}]}}},
            }
        )  # fmt: skip

        def service(key: str) -> Any:
            obj = dev.get_json("dlservice", "llm", "-n", scope.namespace)
            return (
                (obj.get("status") or {}).get(key)
                if key != "replicas"
                else obj["spec"].get("replicas")
            )

        cluster.wait(lambda: service("readyReplicas") == 2, 90, "2 ready DLService replicas")
        prometheus.value = 5.0
        cluster.wait(lambda: service("replicas") == 1, 60, "the DLService scaled down to 1")
        dev.kubectl("delete", "dlservice", "llm", "-n", scope.namespace)
        cluster.wait(lambda: not cluster.pool_nodes(), 90, "the pool back to 0 nodes")
    finally:
        ctl.stop()
        prometheus.shutdown()
        print(ctl.log_tail(120))

    used: set[tuple[str, str, str]] = set()
    refused = []
    for event in dev.requests():
        ref = event.get("objectRef") or {}
        if not ref.get("resource"):
            continue  # discovery and other non-resource requests
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used.add((ref.get("apiGroup", ""), resource, event["verb"]))
        if (event.get("responseStatus") or {}).get("code") == 403:
            refused.append(f"{event['verb']} {event['requestURI']}")
    assert not refused, f"requests the chart's RBAC refused: {refused[:10]}"
    docs = [d for d in manifest_docs(dev, AUDIT_NS) if d["kind"] in ("ClusterRole", "Role")]
    granted = {
        (group, resource, verb)
        for role in docs for rule in role["rules"]
        for group in rule["apiGroups"] for resource in rule["resources"]
        for verb in rule["verbs"]
    }  # fmt: skip
    assert used <= granted, f"used but not granted: {sorted(used - granted)}"
    unused = granted - used
    unexplained = sorted(unused - set(RARELY_USED))
    assert not unexplained, f"granted but never used, and no reason given: {unexplained}"
    print("granted and unused:", {g: RARELY_USED[g] for g in sorted(unused)})


def manifest_docs(dev: DevCluster, namespace: str) -> list[dict[str, Any]]:
    out = helm_on(dev.kubeconfig, "get", "manifest", RELEASE, "-n", namespace).stdout
    return [d for d in yaml.safe_load_all(out) if d]
