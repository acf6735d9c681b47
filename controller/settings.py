"""The controller's own settings (the policy's are ``dlscaler.config.PolicyConfig``)."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from dlscaler.config import PolicyConfig


def default_identity() -> str:
    """Unique per process: the pod name in a cluster (HOSTNAME), plus a random suffix so two
    processes on one machine never share an identity."""
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return f"{host}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    kubeconfig: str | None = None
    """None: in-cluster service account, else $KUBECONFIG / ~/.kube/config."""
    namespaces: tuple[str, ...] = ()
    """Namespaces whose DLJobs/DLServices are managed (empty: all)."""
    nodepool_selector: str = ""
    """Label selector of the NodePools to manage (empty: all)."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    interval_s: float = 10.0
    """A pass at least this often; events trigger passes sooner."""
    resync_s: float = 300.0
    """List the watched kinds afresh this often (heals what a watch may have missed)."""
    full_gc_every_s: float = 120.0
    """A full garbage collection between passes this often (see Operator._collect_garbage)."""
    min_pass_gap_s: float = 0.5
    """Passes never start closer together than this (bursts of events coalesce)."""
    debounce_s: float = 0.2
    max_provisioning_s: float = 900.0
    """A node not Ready this long after it was asked for is given up on."""
    backoff_s: float = 300.0
    """How long a pool that failed (capacity, quota, configuration) is passed over."""
    call_timeout_s: float = 20.0
    """How long a pass waits for provider calls before moving on (they continue)."""
    worker_schedule_timeout_s: float = 300.0
    """Restart a gang whose worker the scheduler has refused this long."""
    restart_backoff_s: float = 10.0
    """A failed gang is restarted after this delay, doubled per restart (0: at once)."""
    restart_backoff_max_s: float = 360.0
    """...and never more than this (the Job controller's 10 s doubling to 6 minutes)."""
    elastic_resize_interval_s: float = 300.0
    """An elastic DLJob is resized (grown or shrunk, a restart of its gang) at most this
    often."""
    max_drain_s: float = 600.0
    """Give up draining a node (uncordon it) after this long."""
    history_step_s: float = 60.0
    history_points: int = 20_160
    persist_every_s: float = 60.0
    state_namespace: str = "default"
    state_configmap: str = "dlscaler-state"
    lease_namespace: str = "default"
    lease_name: str = "dlscaler-controller"
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0
    identity: str = field(default_factory=default_identity)
    probe_host: str = "0.0.0.0"  # probes must be reachable by the kubelet
    probe_port: int = 8080
    """``/metrics``, ``/healthz``, ``/readyz`` (0: any free port)."""
    prometheus_url: str = ""
    """Where DLServices' ``prometheusQuery`` is asked ('' : replicas are not load-driven)."""
    service_window_s: float = 300.0
    """DLService scale-down stabilisation window."""
