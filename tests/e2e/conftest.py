"""End-to-end fixtures: a real Kubernetes control plane, started once per test session.

``kube_cluster`` (session) is a :class:`controller.devcluster.DevCluster` with etcd,
kube-apiserver (client certificates, RBAC, service-account tokens), kube-scheduler,
kube-controller-manager and kwok on 127.0.0.1, and dlscaler's CRDs (``crds/``) installed.
Tests that use it are marked ``e2e``. Its API:

``kube_cluster.kubeconfig``
    Path of an admin (system:masters) kubeconfig; hand it to pykube/kopf/helm.
``kube_cluster.server`` / ``kube_cluster.bin_dir``
    The API server URL; the directory with kubectl, helm, kwok, etc.
``kube_cluster.kubectl(*args, check=True, input=None)``
    Runs kubectl as admin and returns the ``subprocess.CompletedProcess`` (text). With
    ``check`` a non-zero exit raises ``KubectlError`` whose message carries kubectl's stderr.
``kube_cluster.apply(obj_or_list)`` / ``kube_cluster.get_json(*args)``
    ``kubectl apply`` of Python dicts; ``kubectl get ARGS -o json``, parsed.
``kube_cluster.create_gpu_node(name, gpus=8, gpu_type="", ready_delay_s=None, labels=None,
taints=(), wait_ready=False)``
    A kwok-managed Node with ``gpus`` x ``nvidia.com/gpu`` capacity and allocatable, the
    label ``dlscaler.io/gpu-type=<gpu_type>``, and the ``node.kubernetes.io/not-ready``
    taint until kwok reports it Ready ``ready_delay_s`` seconds later (default: at once).
    Prefer the ``kube_gpu_node`` fixture, which also deletes the nodes afterwards: nodes are
    cluster-wide, and a leftover GPU node changes other tests' scheduling.

Driving pods on kwok nodes (no containers really run; kwok writes the pod status):

* a pod bound to a kwok node is Running and Ready at once;
* it finishes when its annotation ``dlscaler.io/kwok-result`` is ``Succeeded`` or
  ``Failed`` (exit code 0 or 1), after ``dlscaler.io/kwok-run-duration`` (a Go duration,
  e.g. ``"10s"``; default at once). Put both in a pod template for pods that finish on
  their own, or call ``kube_cluster.finish_pod(namespace, name, "Succeeded")`` (an
  ``kubectl annotate``) to end one now.

The constants for these names are in :mod:`controller.devcluster_kwok`.

``kube_namespace`` (function) is a fresh namespace (with its ``default`` service account
ready), deleted after the test. If any test failed, the components' last log lines are
printed at the end of the run.

If the binaries are missing the fixture fails, saying to run ``hack/control-plane.sh
build``; it never skips.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.devcluster import DevCluster, DevClusterError, find_bin_dir, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
_LOGS = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def kube_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevCluster]:
    try:
        bin_dir = find_bin_dir()
    except DevClusterError as err:
        pytest.fail(str(err), pytrace=False)
    cluster = DevCluster(workdir=tmp_path_factory.mktemp("kube-cluster"), bin_dir=bin_dir)
    try:
        cluster.start()
        cluster.install_crds(REPO_ROOT / "crds")
    except DevClusterError as err:
        cluster.stop()
        pytest.fail(f"the local control plane did not start: {err}", pytrace=False)
    try:
        yield cluster
    finally:
        if request.session.testsfailed:
            request.config.stash[_LOGS] = cluster.logs_tail()
        cluster.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kube_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    logs = config.stash.get(_LOGS, "")
    if logs:
        terminalreporter.section("control-plane logs (tests failed)")
        terminalreporter.write_line(logs)


@pytest.fixture
def kube_namespace(kube_cluster: DevCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new namespace named after the test; deleted (without waiting) afterwards."""
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:5]}"
    kube_cluster.kubectl("create", "namespace", name)

    def has_default_sa() -> bool:
        proc = kube_cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False)
        return proc.returncode == 0

    wait_until(has_default_sa, 30, f"the default service account in {name}")
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def kube_gpu_node(kube_cluster: DevCluster) -> Iterator[Callable[..., str]]:
    """Factory: ``kube_gpu_node(gpus=8, gpu_type="a100", ...)`` creates a kwok GPU node
    (arguments as ``DevCluster.create_gpu_node``) and returns its name; every node it made
    is deleted after the test."""
    made: list[str] = []

    def create(name: str = "", **kwargs: Any) -> str:
        name = name or f"kwok-gpu-{uuid.uuid4().hex[:6]}"
        kube_cluster.create_gpu_node(name, **kwargs)
        made.append(name)
        return name

    yield create
    if made:
        kube_cluster.kubectl("delete", "node", *made, "--wait=false", check=False)
