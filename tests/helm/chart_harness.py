"""Running the real ``helm`` binary (built by hack/control-plane.sh) on the chart.

Shared by the static chart tests here and the e2e Helm tests (tests/e2e/test_helm*.py).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "dlscaler"
CLOUD_VALUES = {
    "aws": ROOT / "helm" / "values-aws.yaml",
    "gcp": ROOT / "helm" / "values-gcp.yaml",
    "azure": ROOT / "helm" / "values-azure.yaml",
}
KUBE_VERSION = "1.36.5"
"""`helm template` has no cluster to ask; this is the version hack/control-plane.sh builds.
(Its helm, built without the release ldflags, would otherwise assume Kubernetes 1.20.)"""

Doc = dict[str, Any]


def helm_bin() -> Path:
    """helm from $DLSCALER_BIN_DIR or hack/control-plane.sh's cache; fail saying how to build."""
    bin_dir = os.environ.get("DLSCALER_BIN_DIR")
    if not bin_dir:
        out = subprocess.run(
            ["bash", str(ROOT / "hack" / "control-plane.sh"), "bin-dir"],
            capture_output=True,
            text=True,
            check=True,
        )
        bin_dir = out.stdout.strip()
    helm = Path(bin_dir) / "helm"
    if not os.access(helm, os.X_OK):
        pytest.fail(
            f"helm is missing in {bin_dir}: build it with `hack/control-plane.sh build`",
            pytrace=False,
        )
    return helm


def run_helm(
    *args: str, check: bool = True, env: Mapping[str, str] | None = None, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    # Helm keeps caches and repository settings under these; the tests must not read or
    # write the user's.
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "HELM_CACHE_HOME": os.environ.get("HELM_CACHE_HOME", "/tmp/dlscaler-helm-test/cache"),
        "HELM_CONFIG_HOME": os.environ.get("HELM_CONFIG_HOME", "/tmp/dlscaler-helm-test/config"),
        "HELM_DATA_HOME": os.environ.get("HELM_DATA_HOME", "/tmp/dlscaler-helm-test/data"),
        **(env or {}),
    }
    proc = subprocess.run(
        [str(helm_bin()), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout_s,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} exited with {proc.returncode}:\n{stderr_of(proc)}"
        )
    return proc


def stderr_of(proc: subprocess.CompletedProcess[str]) -> str:
    """helm's stderr without the notice it prints for the chart's crds/ symlink."""
    return "\n".join(
        line for line in proc.stderr.splitlines() if "found symbolic link in path" not in line
    )


def values_file(tmp: Path, values: Mapping[str, Any], name: str = "values.yaml") -> list[str]:
    """``-f FILE`` for ``values`` written to ``tmp/name``."""
    path = tmp / name
    path.write_text(yaml.safe_dump(dict(values)))
    return ["-f", str(path)]


def template(
    *args: str,
    release: str = "dlscaler",
    namespace: str = "dlscaler-system",
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    return run_helm(
        "template", release, str(CHART), "--namespace", namespace,
        "--kube-version", KUBE_VERSION, *args, check=check,
    )  # fmt: skip


def render(*args: str, release: str = "dlscaler", namespace: str = "dlscaler-system") -> list[Doc]:
    """The objects `helm template` renders (CRDs not included unless asked)."""
    out = template(*args, release=release, namespace=namespace).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def only(docs: Iterable[Doc], kind: str, name: str | None = None) -> Doc:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# --- against a cluster (tests/e2e/test_helm*.py) --------------------------------------------


def helm_on(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """helm against the cluster of ``kubeconfig`` (never the user's)."""
    return run_helm(*args, f"--kubeconfig={kubeconfig}", check=check,
                    env={"KUBECONFIG": str(kubeconfig)})  # fmt: skip


def manifest_objects(kubeconfig: Path, release: str, namespace: str) -> list[Doc]:
    """The objects of a release as Helm recorded them (`helm get manifest`)."""
    out = helm_on(kubeconfig, "get", "manifest", release, "-n", namespace).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def service_account_kubeconfig(
    admin_kubeconfig: Path, token: str, namespace: str, path: Path
) -> Path:
    """A kubeconfig that authenticates with a ServiceAccount token (what a pod would use),
    for the cluster of ``admin_kubeconfig``."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "sa",
                        "context": {
                            "cluster": cluster["name"],
                            "user": "sa",
                            "namespace": namespace,
                        },
                    }
                ],
                "current-context": "sa",
            }
        )
    )
    path.chmod(0o600)
    return path
