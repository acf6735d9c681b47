"""ServiceAccount tokens rotate; the controller's client follows, on the real API server.

Each test starts a client from a token file holding one ServiceAccount's token, rotates
the file to another ServiceAccount's token, then deletes the first ServiceAccount, which
invalidates every token issued for it (the API server checks that a bound token's
ServiceAccount still exists), and shows the same client, never restarted, keeps working
as the second ServiceAccount; the last does so with a whole controller process.
"""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
import yaml
from op_fixtures import cluster_fixture, scope_fixture  # noqa: F401 - fixtures
from op_harness import Cluster, ControllerProcess, Scope, dljob, nodepool

from controller.devcluster import DevCluster, wait_until
from controller.kube import Kube, TokenFile, TokenFileConfig, core_path, load_config

SELF_REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


class Accounts:
    """ServiceAccounts of one namespace that may read its ConfigMaps, and their tokens."""

    def __init__(self, dev: DevCluster, namespace: str) -> None:
        self.dev = dev
        self.namespace = namespace
        dev.kubectl("create", "role", "read-configmaps", "--verb=get,list",
                    "--resource=configmaps", "-n", namespace)  # fmt: skip

    def create(self, name: str) -> str:
        """A new ServiceAccount, allowed to read ConfigMaps; a one-hour token for it."""
        ns = self.namespace
        self.dev.kubectl("create", "serviceaccount", name, "-n", ns)
        self.dev.kubectl("create", "rolebinding", f"{name}-reads", "--role=read-configmaps",
                         f"--serviceaccount={ns}:{name}", "-n", ns)  # fmt: skip
        return self.dev.kubectl("create", "token", name, "-n", ns, "--duration=1h").stdout.strip()

    def revoke(self, name: str, token: str, ca: Path) -> None:
        """Delete the ServiceAccount and wait until the API server refuses its token."""
        self.dev.kubectl("delete", "serviceaccount", name, "-n", self.namespace)

        def refused() -> bool:
            resp = requests.get(
                f"{self.dev.server}{core_path('configmaps', self.namespace)}",
                headers={"Authorization": f"Bearer {token}"},
                verify=str(ca),
                timeout=5,
            )
            return resp.status_code == 401

        wait_until(refused, 30, f"the API server to refuse {name}'s token")


def whoami(kube: Kube) -> str:
    review = kube.create(
        SELF_REVIEW, {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    return str(review["status"]["userInfo"]["username"])


def write_ca(dev: DevCluster, path: Path) -> Path:
    cluster = yaml.safe_load(Path(dev.kubeconfig).read_text())["clusters"][0]["cluster"]
    path.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    return path


def rotate(root: Path, token: str, generation: int) -> None:
    """What the kubelet does: a new timestamped directory, then ``..data`` swapped to it."""
    version = root / f"..2024_01_01_00_00_{generation:02d}"
    version.mkdir()
    (version / "token").write_text(token)
    (root / "..data_tmp").symlink_to(version.name)
    os.replace(root / "..data_tmp", root / "..data")


@pytest.fixture
def accounts(kube_cluster: DevCluster, kube_namespace: str) -> Accounts:
    return Accounts(kube_cluster, kube_namespace)


def test_the_in_cluster_client_follows_the_rotated_token_file(
    kube_cluster: DevCluster,
    kube_namespace: str,
    accounts: Accounts,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = kube_namespace
    first, second = accounts.create("first"), accounts.create("second")
    # The mounted volume of a pod: token (a symlink the kubelet re-points), namespace,
    # ca.crt; and the address the in-cluster environment gives.
    volume = tmp_path / "serviceaccount"
    volume.mkdir()
    (volume / "token").symlink_to("..data/token")
    rotate(volume, first, 1)
    (volume / "namespace").write_text(ns)
    ca = write_ca(kube_cluster, volume / "ca.crt")
    server = urlparse(kube_cluster.server)
    monkeypatch.setenv("PYKUBE_KUBERNETES_SERVICE_HOST", str(server.hostname))
    monkeypatch.setenv("PYKUBE_KUBERNETES_SERVICE_PORT", str(server.port))

    kube = Kube(load_config(service_account_dir=volume))
    assert whoami(kube) == f"system:serviceaccount:{ns}:first"
    assert kube.list(core_path("configmaps", ns)) is not None

    rotate(volume, second, 2)
    accounts.revoke("first", first, ca)
    assert kube.list(core_path("configmaps", ns)) is not None  # same client, no restart
    assert whoami(kube) == f"system:serviceaccount:{ns}:second"


def test_a_401_reads_a_token_file_whose_change_went_unnoticed(
    kube_cluster: DevCluster, kube_namespace: str, accounts: Accounts, tmp_path: Path
) -> None:
    """The file is rewritten in place to the same size with its old modification time, so
    only the refused request can tell: the client reads the file again and retries."""
    ns = kube_namespace
    first, second = accounts.create("first"), accounts.create("second")
    width = max(len(first), len(second)) + 1
    token_path = tmp_path / "token"
    token_path.write_text(first.ljust(width))
    ca = write_ca(kube_cluster, tmp_path / "ca.crt")
    kubeconfig = tmp_path / "kubeconfig"
    server = kube_cluster.server
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [
                    {"name": "c", "cluster": {"server": server, "certificate-authority": str(ca)}}
                ],
                "users": [{"name": "u", "user": {"tokenFile": str(token_path)}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    base = load_config(str(kubeconfig))
    assert isinstance(base, TokenFileConfig)
    tokens = TokenFile(token_path, recheck_s=3600)  # no periodic re-read in this test
    kube = Kube(TokenFileConfig(base, tokens))
    assert whoami(kube) == f"system:serviceaccount:{ns}:first"

    before = os.stat(token_path)
    token_path.write_text(second.ljust(width))
    os.utime(token_path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(token_path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns,
    )  # fmt: skip
    reads = tokens.reads
    accounts.revoke("first", first, ca)
    assert kube.list(core_path("configmaps", ns)) is not None
    assert tokens.reads == reads + 1  # read again once, after the 401
    assert whoami(kube) == f"system:serviceaccount:{ns}:second"


def test_the_controller_keeps_leading_and_scaling_after_its_token_is_rotated(
    kube_cluster: DevCluster,
    cluster: Cluster,
    scope: Scope,
    accounts: Accounts,
    tmp_path: Path,
) -> None:
    """The whole ``dlscaler run`` on a kubeconfig whose ``tokenFile`` the test rotates: its
    Lease renewals (every 0.5 s), the scaling loop and the kopf watches all authenticate
    with the file's token. After the first ServiceAccount is gone it still leads, and a
    DLJob submitted then is scaled for and runs."""
    ns = scope.namespace
    binding = f"dlscaler-e2e-{scope.id}"
    subjects = [f"--serviceaccount={ns}:{name}" for name in ("first", "second")]
    kube_cluster.kubectl(
        "create", "clusterrolebinding", binding, "--clusterrole=cluster-admin", *subjects
    )
    try:
        first, second = accounts.create("first"), accounts.create("second")
        volume = tmp_path / "serviceaccount"
        volume.mkdir()
        (volume / "token").symlink_to("..data/token")
        rotate(volume, first, 1)
        ca = write_ca(kube_cluster, tmp_path / "ca.crt")
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "clusters": [
                        {
                            "name": "c",
                            "cluster": {
                                "server": kube_cluster.server,
                                "certificate-authority": str(ca),
                            },
                        }
                    ],
                    "users": [{"name": "u", "user": {"tokenFile": str(volume / "token")}}],
                    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "x",
                }
            )
        )
        cluster.apply(nodepool(scope))
        ctl = ControllerProcess(kube_cluster, scope, tmp_path)
        ctl.argv = [
            f"--kubeconfig={kubeconfig}" if a.startswith("--kubeconfig=") else a for a in ctl.argv
        ]
        with contextlib.ExitStack() as stack:
            stack.callback(ctl.stop)
            ctl.start()
            cluster.wait(ctl.leading, 30, "the controller to lead")

            rotate(volume, second, 2)
            accounts.revoke("first", first, ca)
            cluster.apply(dljob(scope, "after-rotation", workers=1, run_s=2))
            cluster.wait(
                lambda: cluster.job_phase("after-rotation") == "Succeeded", 90, "the DLJob to run"
            )
            assert ctl.alive() and ctl.leading(), ctl.log_tail()
            log = ctl.log_path.read_text(errors="replace")
            assert "lost the Lease" not in log, ctl.log_tail()
            assert "changed: using the new token" in log
    finally:
        kube_cluster.kubectl("delete", "clusterrolebinding", binding, check=False)
