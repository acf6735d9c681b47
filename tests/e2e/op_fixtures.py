"""pytest fixtures for the operator e2e tests: each ``test_operator*.py`` imports
``cluster_fixture`` and ``scope_fixture``, and asks for ``cluster`` and ``scope``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from op_harness import Cluster, Scope

from controller.devcluster import DevCluster


@pytest.fixture(name="scope")
def scope_fixture(kube_namespace: str) -> Scope:
    return Scope(namespace=kube_namespace)


@pytest.fixture(name="cluster")
def cluster_fixture(kube_cluster: DevCluster, scope: Scope, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(kube_cluster, scope)
    try:
        yield c
    finally:
        c.cleanup()
        # Shown by pytest only when the test failed: what the controllers said.
        for log in sorted(tmp_path.glob("controller-*.log")):
            lines = log.read_text(errors="replace").splitlines()
            print(f"----- {log.name} (last 80 lines) -----")
            print("\n".join(lines[-80:]))
