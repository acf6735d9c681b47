"""A real, local Kubernetes control plane for tests and development.

etcd, kube-apiserver (client-certificate authentication, RBAC, service-account tokens),
kube-scheduler, kube-controller-manager and kwok, started from the binaries
``hack/control-plane.sh build`` makes, on 127.0.0.1 with free ports, in one directory.
The pytest fixture ``kube_cluster`` (tests/e2e/conftest.py) and ``dlscaler dev cluster``
both use :class:`DevCluster`.

kwok stands in for every kubelet: nodes annotated ``kwok.x-k8s.io/node: fake`` become
Ready and their pods run (see :mod:`controller.devcluster_kwok` for how GPU nodes and pod
completion are driven).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.devcluster_kwok import POD_RESULT_ANNOTATION, gpu_node_manifest, kwok_config
from controller.devcluster_pki import SERVICE_CIDR, Pki, create_pki

REPO_ROOT = Path(__file__).resolve().parent.parent
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-scheduler",
    "kube-controller-manager",
    "kubectl",
    "kwok",
    "helm",
)
COMPONENTS = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kwok")
STATE_FILE = "cluster.json"


class DevClusterError(RuntimeError):
    """The control plane could not be found, started or used; the message says why."""


class _PortTakenError(DevClusterError):
    pass


class KubectlError(DevClusterError):
    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(
            f"kubectl {' '.join(args)} exited with {returncode}: {stderr.strip() or stdout.strip()}"
        )
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def find_bin_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The directory with the control-plane binaries, or an error saying how to build them.

    ``DLSCALER_BIN_DIR`` (set by ``eval "$(hack/control-plane.sh env)"``) wins; otherwise
    the script is asked where its pinned versions live.
    """
    env = os.environ if environ is None else environ
    build_hint = (
        "build them with `hack/control-plane.sh build` (15-25 min the first time, "
        'seconds afterwards), then `eval "$(hack/control-plane.sh env)"`'
    )
    if env.get("DLSCALER_BIN_DIR"):
        bin_dir = Path(env["DLSCALER_BIN_DIR"])
    else:
        script = REPO_ROOT / "hack" / "control-plane.sh"
        if not script.exists():
            raise DevClusterError(f"DLSCALER_BIN_DIR is not set and {script} is missing")
        out = subprocess.run(
            ["bash", str(script), "bin-dir"], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise DevClusterError(f"{script} bin-dir failed: {out.stderr.strip()}")
        bin_dir = Path(out.stdout.strip())
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise DevClusterError(
            f"control-plane binaries missing in {bin_dir}: {', '.join(missing)}; {build_hint}"
        )
    return bin_dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # PR_SET_PDEATHSIG: if the test process dies (even by SIGKILL) the component follows.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    pid: int = 0

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _pid_runs(self.pid, self.argv[0])


def _pid_runs(pid: int, binary: str) -> bool:
    """True if ``pid`` is alive and still runs ``binary`` (pids get reused)."""
    if pid <= 0:
        return False
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return exe.removesuffix(" (deleted)") == os.path.realpath(binary)


@dataclass
class DevCluster:
    """One local control plane in ``workdir``.

    ``start()`` brings it up (raising :class:`DevClusterError` with the failing component's
    log if it cannot), ``stop()`` ends it. ``detach=True`` leaves the processes running
    after this Python process exits (``dlscaler dev cluster up``); ``DevCluster.attach(dir)``
    finds them again.
    """

    workdir: Path
    bin_dir: Path = field(default_factory=find_bin_dir)
    components: Sequence[str] = COMPONENTS
    node_ready_delay_s: float = 0.0
    """How long a kwok node stays NotReady unless its annotation says otherwise."""
    detach: bool = False
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, Component] = field(default_factory=dict)

    # --- paths and addresses ------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """An admin (system:masters) kubeconfig with embedded certificates."""
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    def bin(self, name: str) -> Path:
        return self.bin_dir / name

    # --- lifecycle ----------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def temporary(cls, **kwargs: Any) -> Iterator[DevCluster]:
        """A cluster in a temporary directory, stopped and removed on exit."""
        with tempfile.TemporaryDirectory(prefix="dlscaler-cluster-") as tmp:
            cluster = cls(workdir=Path(tmp), **kwargs)
            try:
                cluster.start()
                yield cluster
            finally:
                cluster.stop()

    def start(self, timeout_s: float = 90.0) -> None:
        """Start the components in order, each once the one before is ready."""
        unknown = set(self.components) - set(COMPONENTS)
        if unknown or "kube-apiserver" not in self.components:
            raise DevClusterError(
                f"components must include kube-apiserver and be among {COMPONENTS}, "
                f"got {list(self.components)}"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        pki = create_pki(self.workdir / "pki")
        # A free port can be taken by someone else before the component binds it (other
        # tests start servers too): then start over once, on new ports and a fresh etcd.
        for attempt in (1, 2):
            try:
                self._start_once(pki, time.monotonic() + timeout_s)
            except _PortTakenError:
                self.stop()
                shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
                if attempt == 2:
                    raise
            except BaseException:
                self.stop()
                raise
            else:
                self._save_state()
                return

    def _start_once(self, pki: Pki, deadline: float) -> None:
        for name in ("etcd-client", "etcd-peer", *COMPONENTS[1:]):
            self.ports[name] = free_port()
        self._write_kubeconfigs(pki)
        self._launch("etcd", self._etcd_argv())
        self._wait_http("etcd", f"http://127.0.0.1:{self.ports['etcd-client']}/health", deadline)
        self._launch("kube-apiserver", self._apiserver_argv(pki))
        self._wait_http("kube-apiserver", f"{self.server}/readyz", deadline, pki)
        later = [c for c in COMPONENTS[2:] if c in self.components]
        for name in later:
            self._launch(name, self._argv(name, pki))
        for name in later:
            scheme = "http" if name == "kwok" else "https"
            self._wait_http(name, f"{scheme}://127.0.0.1:{self.ports[name]}/healthz", deadline)
        if "kube-controller-manager" in self.components:
            self._wait_default_service_account(deadline)

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop every component (newest first), SIGTERM then SIGKILL."""
        for comp in reversed(list(self.procs.values())):
            _terminate(comp, grace_s)
        self.procs.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.workdir / STATE_FILE).unlink()

    def alive(self) -> dict[str, bool]:
        return {name: comp.alive() for name, comp in self.procs.items()}

    def logs_tail(self, lines: int = 60) -> str:
        """The last lines of every component's log, for failure reports."""
        parts = []
        for name in self.procs or dict.fromkeys(self.components):
            path = self.log_dir / f"{name}.log"
            if not path.exists():
                continue
            text = path.read_text(errors="replace").splitlines()[-lines:]
            state = "running" if name in self.procs and self.procs[name].alive() else "stopped"
            parts.append(f"----- {name} ({state}; {path}) -----\n" + "\n".join(text))
        return "\n".join(parts)

    # --- state file, for `dlscaler dev cluster` across processes -------------------------

    def _save_state(self) -> None:
        state = {
            "bin_dir": str(self.bin_dir),
            "ports": self.ports,
            "components": {name: {"pid": c.pid, "argv": c.argv} for name, c in self.procs.items()},
        }
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def attach(cls, workdir: Path) -> DevCluster:
        """The cluster a previous ``start(detach=True)`` left running in ``workdir``."""
        path = workdir / STATE_FILE
        if not path.exists():
            raise DevClusterError(f"no cluster is running in {workdir} (no {STATE_FILE})")
        state = json.loads(path.read_text())
        cluster = cls(workdir=workdir, bin_dir=Path(state["bin_dir"]), detach=True)
        cluster.ports = {k: int(v) for k, v in state["ports"].items()}
        for name, c in state["components"].items():
            cluster.procs[name] = Component(
                name, list(c["argv"]), workdir / "logs" / f"{name}.log", pid=int(c["pid"])
            )
        cluster.components = tuple(cluster.procs)
        return cluster

    # --- using it -----------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout_s: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the cluster admin; with ``check`` a failure raises
        :class:`KubectlError` carrying kubectl's stderr."""
        # A discovery cache per cluster: ports get reused, and a cache from an earlier
        # cluster on the same port would hide this one's CRDs.
        cache = f"--cache-dir={self.workdir / 'kubectl-cache'}"
        argv = [str(self.bin("kubectl")), f"--kubeconfig={self.kubeconfig}", cache, *args]
        proc = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if check and proc.returncode != 0:
            raise KubectlError(args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def apply(self, manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """``kubectl apply`` one object or a list of them (JSON is valid YAML)."""
        docs = [manifest] if isinstance(manifest, Mapping) else list(manifest)
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
        )

    def get_json(self, *args: str) -> dict[str, Any]:
        """``kubectl get ARGS -o json``, parsed."""
        return dict(json.loads(self.kubectl("get", *args, "-o", "json").stdout))

    def finish_pod(self, namespace: str, name: str, result: str = "Succeeded") -> None:
        """Make kwok end a running pod now: phase ``result`` (Succeeded or Failed)."""
        if result not in ("Succeeded", "Failed"):
            raise ValueError(f"result must be Succeeded or Failed, got {result!r}")
        self.kubectl(
            "annotate",
            "pod",
            name,
            "-n",
            namespace,
            "--overwrite",
            f"{POD_RESULT_ANNOTATION}={result}",
        )

    def install_crds(self, crd_dir: Path = REPO_ROOT / "crds", timeout_s: float = 60.0) -> None:
        """Create (server-side apply) every CRD in ``crd_dir`` and wait until it is served."""
        files = sorted(crd_dir.glob("*.yaml"))
        if not files:
            raise DevClusterError(f"no CRD files in {crd_dir}")
        args = ["apply", "--server-side", "--force-conflicts"]
        for f in files:
            args += ["-f", str(f)]
        self.kubectl(*args)
        self.kubectl(
            "wait",
            "--for=condition=Established",
            f"--timeout={int(timeout_s)}s",
            *[f"-f={f}" for f in files],
        )

    def create_gpu_node(
        self,
        name: str,
        *,
        gpus: int = 8,
        gpu_type: str = "",
        ready_delay_s: float | None = None,
        labels: Mapping[str, str] | None = None,
        taints: Sequence[Mapping[str, str]] = (),
        wait_ready: bool = False,
        timeout_s: float = 60.0,
    ) -> None:
        """Create a kwok-managed Node with ``gpus`` x nvidia.com/gpu (see
        :func:`controller.devcluster_kwok.gpu_node_manifest`); optionally wait until it is
        Ready and schedulable."""
        manifest = gpu_node_manifest(
            name,
            gpus=gpus,
            gpu_type=gpu_type,
            ready_delay_s=ready_delay_s,
            labels=labels,
            taints=taints,
        )
        self.kubectl("create", "-f", "-", input=json.dumps(manifest))
        if wait_ready:
            self.wait_node_schedulable(name, timeout_s=timeout_s)

    def wait_node_schedulable(self, name: str, timeout_s: float = 60.0) -> None:
        """Wait until the node is Ready and the not-ready taint is gone."""

        def ready() -> bool:
            node = json.loads(self.kubectl("get", "node", name, "-o", "json").stdout)
            conds = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
            taints = [t["key"] for t in node["spec"].get("taints", [])]
            return conds.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints

        wait_until(ready, timeout_s, f"node {name} to become Ready and schedulable")

    # --- internals ----------------------------------------------------------------------

    def _launch(self, name: str, argv: list[str]) -> None:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=_component_env(),
                start_new_session=self.detach,
                preexec_fn=None if self.detach else _die_with_parent,  # noqa: PLW1509
            )
        self.procs[name] = Component(name, argv, log, proc, proc.pid)

    def _wait_http(self, name: str, url: str, deadline: float, pki: Pki | None = None) -> None:
        ctx = ssl.create_default_context(cafile=str(pki.ca.cert)) if pki else _insecure_context()
        last = ""
        while time.monotonic() < deadline:
            comp = self.procs[name]
            if not comp.alive():
                tail = self.logs_tail(40)
                if "address already in use" in comp.log.read_text(errors="replace")[-20000:]:
                    raise _PortTakenError(f"{name}: its port was taken; logs:\n{tail}")
                raise DevClusterError(f"{name} exited during startup; its log ends:\n{tail}")
            try:
                with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as err:
                last = str(err)
            time.sleep(0.2)
        raise DevClusterError(
            f"{name} not ready at {url} in time (last error: {last}); logs:\n{self.logs_tail(40)}"
        )

    def _wait_default_service_account(self, deadline: float) -> None:
        # Pods are refused until the controller-manager created the namespace's "default"
        # service account; tests should not each have to wait for it.
        def exists() -> bool:
            proc = self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
            return proc.returncode == 0

        wait_until(exists, max(1.0, deadline - time.monotonic()), "the default service account")

    def _write_kubeconfigs(self, pki: Pki) -> None:
        for client, pair in pki.clients.items():
            if client == "front-proxy-client":
                continue
            path = self.kubeconfig if client == "admin" else self.workdir / f"{client}.kubeconfig"
            path.write_text(
                json.dumps(_kubeconfig(self.server, pki.ca.cert, pair.cert, pair.key, client))
            )
            path.chmod(0o600)

    def _etcd_argv(self) -> list[str]:
        client = f"http://127.0.0.1:{self.ports['etcd-client']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        return [
            str(self.bin("etcd")),
            "--name=dev",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=dev={peer}",
            "--unsafe-no-fsync",  # throwaway data: durability costs seconds on slow disks
            "--log-level=warn",
        ]

    def _apiserver_argv(self, pki: Pki) -> list[str]:
        return [
            str(self.bin("kube-apiserver")),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['kube-apiserver']}",
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd-client']}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.apiserver.cert}",
            f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # The front proxy, as kubeadm configures it: aggregated API servers (and the
            # scheduler's and controller-manager's delegated authentication) trust it.
            f"--requestheader-client-ca-file={pki.ca.cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.clients['front-proxy-client'].cert}",
            f"--proxy-client-key-file={pki.clients['front-proxy-client'].key}",
            "--profiling=false",
            "--v=1",
        ]

    def _argv(self, name: str, pki: Pki) -> list[str]:
        kubeconfig = str(self.workdir / f"{name}.kubeconfig")
        secure = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports[name]}",
            f"--cert-dir={self.workdir / (name + '-certs')}",
            "--leader-elect=false",
            "--v=1",
        ]
        if name == "kube-scheduler":
            return [str(self.bin(name)), *secure]
        if name == "kube-controller-manager":
            return [
                str(self.bin(name)),
                *secure,
                # Each controller acts as its own service account, as in kubeadm clusters.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca.cert}",
                f"--cluster-signing-cert-file={pki.ca.cert}",
                f"--cluster-signing-key-file={pki.ca.key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--node-monitor-period=1s",  # lift the not-ready taint soon after kwok's Ready
            ]
        config = self.workdir / "kwok.yaml"
        config.write_text(kwok_config(node_ready_delay_s=self.node_ready_delay_s))
        return [
            str(self.bin("kwok")),
            f"--kubeconfig={kubeconfig}",
            f"--config={config}",
            f"--server-address=127.0.0.1:{self.ports['kwok']}",
            "--cidr=10.244.0.0/16",
            "--node-ip=10.1.0.1",
        ]


def _kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "dlscaler-dev",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [
            {"name": "dlscaler-dev", "context": {"cluster": "dlscaler-dev", "user": user}}
        ],
        "current-context": "dlscaler-dev",
    }


def _component_env() -> dict[str, str]:
    # Nothing from the caller's Kubernetes or proxy settings may leak into the components.
    keep = ("PATH", "HOME", "TMPDIR", "LANG", "TZ")
    return {k: v for k, v in os.environ.items() if k in keep}


def _insecure_context() -> ssl.SSLContext:
    # The scheduler and controller-manager serve /healthz with self-signed certificates.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _terminate(comp: Component, grace_s: float) -> None:
    if not comp.alive():
        return
    pid = comp.process.pid if comp.process else comp.pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and comp.alive():
        time.sleep(0.05)
    if comp.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if comp.process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            comp.process.wait(timeout=5)


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2
) -> None:
    """Poll ``predicate`` until it returns true; raise naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise DevClusterError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


__all__ = [
    "BINARIES",
    "COMPONENTS",
    "DevCluster",
    "DevClusterError",
    "KubectlError",
    "find_bin_dir",
    "free_port",
    "wait_until",
]
