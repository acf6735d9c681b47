"""The local control plane itself: authentication, RBAC, service-account tokens, the
build script's interface, and `dlscaler dev cluster`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from controller import devcluster
from controller.devcluster import DevCluster, DevClusterError, find_bin_dir

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_rbac_is_enforced_for_service_account_tokens(
    kube_cluster: DevCluster, kube_namespace: str
) -> None:
    # A token signed with the cluster's service-account key authenticates...
    token = kube_cluster.kubectl("create", "token", "default", "-n", kube_namespace).stdout.strip()
    as_sa = ["--kubeconfig=/dev/null", f"--server={kube_cluster.server}", f"--token={token}"]
    as_sa.append(f"--certificate-authority={kube_cluster.workdir / 'pki' / 'ca.crt'}")
    kubectl = str(kube_cluster.bin("kubectl"))
    who = subprocess.run(
        [kubectl, *as_sa, "auth", "whoami", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    user = json.loads(who.stdout)["status"]["userInfo"]["username"]
    assert user == f"system:serviceaccount:{kube_namespace}:default"
    # ...and RBAC denies it what no role grants.
    denied = subprocess.run(
        [kubectl, *as_sa, "get", "nodes"], capture_output=True, text=True, check=False
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    # Granting a role changes that: RBAC, not a blanket allow, made the decision.
    kube_cluster.kubectl(
        "create",
        "rolebinding",
        "view",
        "-n",
        kube_namespace,
        "--clusterrole=view",
        f"--serviceaccount={kube_namespace}:default",
    )
    allowed = subprocess.run(
        [kubectl, *as_sa, "get", "pods", "-n", kube_namespace],
        capture_output=True,
        text=True,
        check=False,
    )
    assert allowed.returncode == 0, allowed.stderr


def test_requests_without_credentials_are_refused(kube_cluster: DevCluster) -> None:
    ctx = ssl.create_default_context(cafile=str(kube_cluster.workdir / "pki" / "ca.crt"))
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{kube_cluster.server}/api/v1/namespaces", context=ctx, timeout=10)
    assert err.value.code in (401, 403)


def test_all_components_run_and_report_their_versions(kube_cluster: DevCluster) -> None:
    assert all(kube_cluster.alive().values()), kube_cluster.alive()
    assert set(kube_cluster.alive()) == {
        "etcd",
        "kube-apiserver",
        "kube-scheduler",
        "kube-controller-manager",
        "kwok",
    }
    version = json.loads(kube_cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.36.")
    assert version["clientVersion"]["gitVersion"] == version["serverVersion"]["gitVersion"]


def test_missing_binaries_fail_with_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(DevClusterError, match=r"hack/control-plane.sh build"):
        find_bin_dir({"DLSCALER_BIN_DIR": str(tmp_path)})


def test_control_plane_env_names_the_binary_directory() -> None:
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "control-plane.sh"), "env"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    bin_dir = lines["DLSCALER_BIN_DIR"].strip("'")
    assert bin_dir in lines["PATH"]
    assert Path(bin_dir).name.startswith("k8s-v1.36.")
    assert "etcd-v3.6." in bin_dir


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


@pytest.mark.e2e
def test_dev_cluster_cli_up_kubeconfig_down(tmp_path: Path) -> None:
    bin_dir = find_bin_dir()
    dlscaler = shutil.which("dlscaler")
    assert dlscaler, "the dlscaler entry point is not on PATH (source hack/env.sh)"
    env = {**os.environ, "DLSCALER_BIN_DIR": str(bin_dir)}
    workdir = tmp_path / "cluster"

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [dlscaler, "dev", "cluster", *args, "--dir", str(workdir)],
            capture_output=True,
            text=True,
            env=env,
            check=check,
            timeout=180,
        )

    up = run("up", "--gpu-nodes=1", "--node-ready-delay=4")
    nodes_created = time.monotonic()
    try:
        assert "export KUBECONFIG=" in up.stdout
        kubeconfig = run("kubeconfig").stdout.strip()
        assert Path(kubeconfig).is_file()
        kubectl = [str(bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}"]
        crds = subprocess.run(
            [*kubectl, "get", "crds", "-o", "name"], capture_output=True, text=True, check=True
        )
        assert (
            "customresourcedefinition.apiextensions.k8s.io/dljobs.dlscaler.io"
            in crds.stdout.split()
        )
        nodes = subprocess.run(
            [*kubectl, "get", "nodes", "-o", "name"], capture_output=True, text=True, check=True
        )
        assert nodes.stdout.split() == ["node/kwok-gpu-0"]
        # The cluster-wide ready delay holds the node NotReady for its first 4 seconds.
        cluster = DevCluster.attach(workdir)
        ready = cluster.get_json("node", "kwok-gpu-0")["status"].get("conditions", [])
        if time.monotonic() - nodes_created < 3:
            assert not any(c["type"] == "Ready" and c["status"] == "True" for c in ready)
        cluster.wait_node_schedulable("kwok-gpu-0", timeout_s=30)
        assert time.monotonic() - nodes_created >= 3
        gpus = cluster.get_json("node", "kwok-gpu-0")["status"]["allocatable"]["nvidia.com/gpu"]
        assert gpus == "8"
        # A second `up` on the same directory refuses rather than orphaning the first.
        again = run("up", check=False)
        assert again.returncode != 0
        assert "already runs" in again.stderr
        pids = [c.pid for c in cluster.procs.values()]
    finally:
        down = run("down", check=False)
    assert down.returncode == 0, down.stderr
    assert not workdir.exists()
    assert not any(_running(pid) for pid in pids)
    gone = run("kubeconfig", check=False)
    assert gone.returncode != 0
    assert "dlscaler dev cluster up" in gone.stderr


@pytest.mark.e2e
def test_start_retries_when_a_chosen_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process grabs the port between free_port() and etcd binding it.
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_free_port = devcluster.free_port
    handed_out: list[int] = []

    def free_port() -> int:
        handed_out.append(taken if not handed_out else real_free_port())
        return handed_out[-1]

    monkeypatch.setattr(devcluster, "free_port", free_port)
    cluster = DevCluster(workdir=tmp_path, components=("etcd", "kube-apiserver"))
    try:
        cluster.start()
        assert cluster.ports["etcd-client"] != taken
        assert cluster.kubectl("get", "namespaces", "-o", "name").stdout.split()
        assert "address already in use" in (tmp_path / "logs" / "etcd.log").read_text()
    finally:
        cluster.stop()
        squatter.close()
