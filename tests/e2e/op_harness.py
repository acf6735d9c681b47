"""Running the dlscaler controller against the e2e control plane, and reading what it did.

:class:`ControllerProcess` is a real ``dlscaler run`` process with the kwok provider
(SIGKILL-able, for the restart and failover tests), with fast settings: passes every
second, a 4 s Lease, short backoffs. Each test gets its own GPU type, NodePool label, Lease
and state ConfigMap
(:class:`Scope`), so tests sharing the session's cluster never act on each other's objects.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.devcluster import DevCluster, free_port, wait_until
from controller.devcluster_kwok import POD_RESULT_ANNOTATION, POD_RUN_DURATION_ANNOTATION
from controller.kube import Kube, core_path, custom_path
from controller.names import API_VERSION, DLJOBS, NODEPOOLS, POOL_LABEL

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
SCOPE_LABEL = "dlscaler.io/e2e-scope"


@dataclass
class Scope:
    """Names one test's objects share, unique per test."""

    namespace: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    @property
    def gpu_type(self) -> str:
        return f"a100-{self.id}"

    def pool_name(self, suffix: str = "") -> str:
        return f"e2e-{self.id}{'-' + suffix if suffix else ''}"

    @property
    def selector(self) -> str:
        return f"{SCOPE_LABEL}={self.id}"


def nodepool(scope: Scope, suffix: str = "", **spec: Any) -> dict[str, Any]:
    body = {
        "provider": "kwok",
        "gpuType": scope.gpu_type,
        "gpusPerNode": 8,
        "minNodes": 0,
        "maxNodes": 4,
        "pricePerHour": 10.0,
        "provisioningDelaySeconds": 1,
        "idleTimeoutSeconds": 4,
    }
    body.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "NodePool",
        "metadata": {"name": scope.pool_name(suffix), "labels": {SCOPE_LABEL: scope.id}},
        "spec": body,
    }


def dljob(
    scope: Scope,
    name: str,
    *,
    workers: int = 2,
    gpus_per_worker: int = 8,
    gpu_type: str | None = None,
    run_s: float = 3.0,
    result: str = "Succeeded",
    framework: str = "pytorch",
    **spec: Any,
) -> dict[str, Any]:
    """A DLJob whose workers (on kwok nodes) finish by themselves after ``run_s``."""
    body: dict[str, Any] = {
        "framework": framework,
        "workers": workers,
        "gpusPerWorker": gpus_per_worker,
        "gpuType": scope.gpu_type if gpu_type is None else gpu_type,
        "template": {
            "metadata": {
                "annotations": {
                    POD_RESULT_ANNOTATION: result,
                    POD_RUN_DURATION_ANNOTATION: f"{int(run_s * 1000)}ms",
                }
            },
            "spec": {"containers": [{"name": "trainer", "image": "trainer:1"}]},
        },
    }
    body.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "DLJob",
        "metadata": {"name": name, "namespace": scope.namespace},
        "spec": body,
    }


class ControllerProcess:
    """One ``dlscaler run`` replica."""

    def __init__(
        self,
        cluster: DevCluster,
        scope: Scope,
        log_dir: Path,
        *,
        name: str = "a",
        extra: tuple[str, ...] = (),
    ) -> None:
        self.cluster = cluster
        self.scope = scope
        self.name = name
        self.port = free_port()
        self.identity = f"ctl-{name}-{scope.id}"
        self.log_path = log_dir / f"controller-{name}.log"
        self.argv = [
            sys.executable,
            "-m",
            "dlscaler.cli",
            "run",
            f"--kubeconfig={cluster.kubeconfig}",
            f"--namespace={scope.namespace}",
            f"--watch-namespace={scope.namespace}",
            f"--nodepool-selector={scope.selector}",
            f"--listen=127.0.0.1:{self.port}",
            f"--identity={self.identity}",
            f"--lease-name=dlscaler-{scope.id}",
            f"--state-configmap=dlscaler-state-{scope.id}",
            "--interval=1",
            "--min-pass-gap=0.2",
            "--lease-duration=4",
            "--lease-renew-interval=0.5",
            "--backoff=20",
            "--max-provisioning=30",
            "--call-timeout=10",
            "--history-step=1",
            "--persist-every=1",
            "--log-level=info",
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ControllerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env
            )
        wait_until(lambda: self.http("/healthz")[0] == 200 or not self.alive(), 30,
                   f"controller {self.name} to serve /healthz")  # fmt: skip
        assert self.alive(), f"controller {self.name} exited:\n{self.log_tail()}"
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no Lease release (a crash)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def http(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample on /metrics (None if absent)."""
        status, text = self.http("/metrics")
        if status != 200:
            return None
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            found = dict(
                part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part
            )
            found = {k: v.strip('"') for k, v in found.items()}
            if all(found.get(k) == v for k, v in labels.items()):
                return float(value)
        return None

    def leading(self) -> bool:
        return self.metric("dlscaler_leader") == 1.0

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Cluster:
    """Reads and cleanup for one test's scope."""

    def __init__(self, cluster: DevCluster, scope: Scope) -> None:
        self.dev = cluster
        self.scope = scope
        self.kube = Kube.connect(str(cluster.kubeconfig))

    def apply(self, *objs: dict[str, Any]) -> None:
        self.dev.apply(list(objs))

    def job(self, name: str) -> dict[str, Any]:
        obj = self.kube.get(custom_path(DLJOBS, self.scope.namespace, name))
        assert obj is not None, f"DLJob {name} is gone"
        return obj

    def job_phase(self, name: str) -> str:
        return str((self.job(name).get("status") or {}).get("phase") or "")

    def pool(self, suffix: str = "") -> dict[str, Any]:
        obj = self.kube.get(custom_path(NODEPOOLS, name=self.scope.pool_name(suffix)))
        assert obj is not None
        return obj

    def pool_status(self, suffix: str = "") -> dict[str, Any]:
        return dict(self.pool(suffix).get("status") or {})

    def pool_nodes(self, suffix: str = "") -> list[dict[str, Any]]:
        selector = f"{POOL_LABEL}={self.scope.pool_name(suffix)}"
        return self.kube.list(core_path("nodes"), label_selector=selector)

    def pods(self, job: str) -> list[dict[str, Any]]:
        return self.kube.list(
            core_path("pods", self.scope.namespace), label_selector=f"dlscaler.io/job-name={job}"
        )

    def events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.kube.list(core_path("events", namespace or self.scope.namespace))

    def events_for(self, kind: str, name: str, namespace: str | None = None) -> list[dict]:
        return [
            e
            for e in self.events(namespace)
            if e["involvedObject"].get("kind") == kind and e["involvedObject"].get("name") == name
        ]

    def pool_events(self, suffix: str = "") -> list[dict[str, Any]]:
        return self.events_for("NodePool", self.scope.pool_name(suffix), "default")

    def wait(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        wait_until(predicate, timeout_s, what, interval_s=0.2)

    def cleanup(self) -> None:
        """Delete the scope's NodePools and their nodes (cluster-scoped: the namespace
        fixture does not take them along)."""
        pools = self.kube.list(custom_path(NODEPOOLS), label_selector=self.scope.selector)
        for pool in pools:
            name = pool["metadata"]["name"]
            self.kube.delete(custom_path(NODEPOOLS, name=name))
            for node in self.kube.list(core_path("nodes"), label_selector=f"{POOL_LABEL}={name}"):
                self.kube.delete(core_path("nodes", name=node["metadata"]["name"]))


class NodeRecorder:
    """Remembers every node of a pool ever seen, to prove no extra scale-up happened."""

    def __init__(self, cluster: Cluster, suffix: str = "") -> None:
        self.cluster = cluster
        self.suffix = suffix
        self.seen: set[str] = set()
        self.max_live = 0

    def sample(self) -> None:
        nodes = self.cluster.pool_nodes(self.suffix)
        self.seen.update(n["metadata"]["name"] for n in nodes)
        self.max_live = max(self.max_live, len(nodes))

    def wait(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        def check() -> bool:
            self.sample()
            return predicate()

        self.cluster.wait(check, timeout_s, what)


@contextlib.contextmanager
def controllers(
    dev: DevCluster, scope: Scope, log_dir: Path, *names: str, extra: tuple[str, ...] = ()
) -> Iterator[list[ControllerProcess]]:
    procs = [ControllerProcess(dev, scope, log_dir, name=n, extra=extra) for n in names or ("a",)]
    try:
        for p in procs:
            p.start()
        yield procs
    finally:
        for p in procs:
            p.stop()


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)[:6000]


def since(t0: float) -> float:
    return time.monotonic() - t0
