"""``dlscaler run``: the controller (kopf operator + scaling loop).

Only typer and the standard library at import time (``dlscaler --help`` stays fast); the
operator is imported when the command runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def run_command(
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            help="kubeconfig file (default: in-cluster service account, else $KUBECONFIG)."
        ),
    ] = None,
    namespace: Annotated[
        str,
        typer.Option(
            help="The controller's own namespace: its Lease and demand-history ConfigMap "
            "(default: $POD_NAMESPACE, else default)."
        ),
    ] = "",
    watch_namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--watch-namespace",
            help="Manage DLJobs/DLServices of this namespace only (repeatable) "
            "(default: all namespaces).",
        ),
    ] = None,
    nodepool_selector: Annotated[
        str, typer.Option(help="Manage only the NodePools with these labels (a label selector).")
    ] = "",
    policy_config: Annotated[
        Path | None, typer.Option(help="Policy configuration YAML (what `dlscaler tune` writes).")
    ] = None,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between scaling passes (events come sooner).")
    ] = 10.0,
    min_pass_gap: Annotated[
        float, typer.Option(min=0.0, help="Never start passes closer than this, seconds.")
    ] = 0.5,
    listen: Annotated[
        str, typer.Option(help="HOST:PORT of /metrics, /healthz and /readyz (port 0: any).")
    ] = "0.0.0.0:8080",
    leader_elect: Annotated[
        bool,
        typer.Option("--leader-elect/--no-leader-elect", help="Act only while holding the Lease."),
    ] = True,
    lease_name: Annotated[str, typer.Option(help="The leader Lease's name.")] = (
        "dlscaler-controller"
    ),
    lease_duration: Annotated[float, typer.Option(min=1.0, help="Lease duration, seconds.")] = 15.0,
    lease_renew_interval: Annotated[
        float, typer.Option(min=0.1, help="The leader renews the Lease this often, seconds.")
    ] = 2.0,
    state_configmap: Annotated[
        str, typer.Option(help="ConfigMap keeping the demand history across restarts.")
    ] = "dlscaler-state",
    max_provisioning: Annotated[
        float,
        typer.Option(
            min=1.0, help="Give up on nodes not Ready this long after they were asked for."
        ),
    ] = 900.0,
    backoff: Annotated[
        float,
        typer.Option(
            min=0.0, help="Pass over a pool this long after a capacity/quota/config error."
        ),
    ] = 300.0,
    call_timeout: Annotated[
        float, typer.Option(min=0.1, help="Wait at most this long for provider calls in a pass.")
    ] = 20.0,
    worker_schedule_timeout: Annotated[
        float,
        typer.Option(min=1.0, help="Restart a gang whose worker cannot be scheduled this long."),
    ] = 300.0,
    restart_backoff: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Delay before a failed gang restarts, seconds, doubled per restart (0: none).",
        ),
    ] = 10.0,
    restart_backoff_max: Annotated[
        float, typer.Option(min=0.0, help="The longest delay before a gang restart, seconds.")
    ] = 360.0,
    elastic_resize_interval: Annotated[
        float,
        typer.Option(
            min=0.0, help="Resize (grow or shrink) an elastic DLJob at most this often, seconds."
        ),
    ] = 300.0,
    max_drain: Annotated[
        float, typer.Option(min=1.0, help="Give up draining a node after this long, seconds.")
    ] = 600.0,
    history_step: Annotated[
        float, typer.Option(min=1.0, help="Demand history step, seconds.")
    ] = 60.0,
    persist_every: Annotated[
        float, typer.Option(min=1.0, help="Save the demand history this often, seconds.")
    ] = 60.0,
    prometheus_url: Annotated[
        str,
        typer.Option(help="Prometheus base URL for DLServices' prometheusQuery targets."),
    ] = "",
    service_stabilization: Annotated[
        float,
        typer.Option(min=0.0, help="DLService scale-down stabilisation window, seconds."),
    ] = 300.0,
    identity: Annotated[
        str, typer.Option(help="Leader-election identity (default: host name + random).")
    ] = "",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[str, typer.Option(help="text, or json (one object per line).")] = "text",
) -> None:
    """Run the controller: watch DLJobs, DLServices and NodePools, and scale the pools."""
    import yaml

    from controller.operator import run, setup_logging
    from controller.settings import ControllerSettings, default_identity
    from dlscaler.config import ConfigError, PolicyConfig, parse_policy_config

    if log_format not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--log-format")
    setup_logging(log_level, log_format)
    policy = PolicyConfig()
    if policy_config is not None:
        try:
            data = yaml.safe_load(policy_config.read_text())
            policy = parse_policy_config(data, source=str(policy_config))
        except (OSError, yaml.YAMLError, ConfigError) as err:
            typer.echo(f"dlscaler run: {err}", err=True)
            raise typer.Exit(2) from None
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise typer.BadParameter(f"expected HOST:PORT, got {listen!r}", param_hint="--listen")
    own_namespace = namespace or os.environ.get("POD_NAMESPACE") or "default"
    renew_deadline = max(lease_renew_interval * 1.5, lease_duration * 2 / 3)
    if not lease_renew_interval < renew_deadline < lease_duration:
        raise typer.BadParameter(
            f"{lease_renew_interval} s is too close to --lease-duration {lease_duration} s",
            param_hint="--lease-renew-interval",
        )
    settings = ControllerSettings(
        kubeconfig=str(kubeconfig) if kubeconfig else None,
        namespaces=tuple(watch_namespace or ()),
        nodepool_selector=nodepool_selector,
        policy=policy,
        interval_s=interval,
        min_pass_gap_s=min_pass_gap,
        max_provisioning_s=max_provisioning,
        backoff_s=backoff,
        call_timeout_s=call_timeout,
        max_drain_s=max_drain,
        worker_schedule_timeout_s=worker_schedule_timeout,
        restart_backoff_s=restart_backoff,
        restart_backoff_max_s=restart_backoff_max,
        elastic_resize_interval_s=elastic_resize_interval,
        history_step_s=history_step,
        persist_every_s=persist_every,
        state_namespace=own_namespace,
        state_configmap=state_configmap,
        lease_namespace=own_namespace,
        lease_name=lease_name,
        lease_duration_s=lease_duration,
        renew_deadline_s=renew_deadline,
        retry_period_s=lease_renew_interval,
        identity=identity or default_identity(),
        probe_host=host or "0.0.0.0",
        probe_port=int(port),
        prometheus_url=prometheus_url,
        service_window_s=service_stabilization,
    )
    run(settings, leader_elect=leader_elect)


def register_run(app: typer.Typer) -> None:
    app.command("run")(run_command)
