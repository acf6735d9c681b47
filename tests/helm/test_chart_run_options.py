"""Every option of `dlscaler run` is reachable from the chart's values, with the bounds the
command itself enforces, and docs/install.md's table says which value sets which option.

An option added to `dlscaler run` without a chart value (or a stated reason why it has
none) fails here, not in a user's `extraArgs`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from chart_harness import CHART, ROOT, only, render, template, values_file

Values = dict[str, Any]

SET_BY_VALUE: dict[str, tuple[str, Any, str]] = {
    # option: (value path, a non-default value, the argument it must produce)
    "--watch-namespace": ("controller.watchNamespaces", ["team-a"], "--watch-namespace=team-a"),
    "--nodepool-selector": (
        "controller.nodePoolSelector", "team=ml", "--nodepool-selector=team=ml",
    ),
    "--interval": ("controller.reconcileIntervalSeconds", 7, "--interval=7"),
    "--min-pass-gap": ("controller.minPassGapSeconds", 0.25, "--min-pass-gap=0.25"),
    "--max-provisioning": ("controller.maxProvisioningSeconds", 1200, "--max-provisioning=1200"),
    "--backoff": ("controller.backoffSeconds", 120, "--backoff=120"),
    "--call-timeout": ("controller.providerCallTimeoutSeconds", 45, "--call-timeout=45"),
    "--worker-schedule-timeout": (
        "controller.workerScheduleTimeoutSeconds", 600, "--worker-schedule-timeout=600",
    ),
    "--restart-backoff": ("controller.restartBackoffSeconds", 30, "--restart-backoff=30"),
    "--restart-backoff-max": (
        "controller.restartBackoffMaxSeconds", 600, "--restart-backoff-max=600",
    ),
    "--elastic-resize-interval": (
        "controller.elasticResizeIntervalSeconds", 120, "--elastic-resize-interval=120",
    ),
    "--max-drain": ("controller.maxDrainSeconds", 900, "--max-drain=900"),
    "--history-step": ("controller.demandHistoryStepSeconds", 30, "--history-step=30"),
    "--persist-every": ("controller.demandHistorySaveSeconds", 120, "--persist-every=120"),
    "--state-configmap": (
        "controller.stateConfigMapName", "ml-state", "--state-configmap=ml-state",
    ),
    "--prometheus-url": (
        "controller.prometheusUrl", "http://prom.monitoring:9090",
        "--prometheus-url=http://prom.monitoring:9090",
    ),
    "--service-stabilization": (
        "controller.serviceStabilizationSeconds", 60, "--service-stabilization=60",
    ),
    "--log-level": ("controller.logLevel", "debug", "--log-level=debug"),
    "--log-format": ("controller.logFormat", "text", "--log-format=text"),
    "--listen": ("metrics.port", 9102, "--listen=0.0.0.0:9102"),
    "--no-leader-elect": ("leaderElection.enabled", False, "--no-leader-elect"),
    "--lease-name": ("leaderElection.leaseName", "ml-leader", "--lease-name=ml-leader"),
    "--lease-duration": ("leaderElection.leaseDurationSeconds", 30, "--lease-duration=30"),
    "--lease-renew-interval": (
        "leaderElection.renewIntervalSeconds", 3, "--lease-renew-interval=3",
    ),
}  # fmt: skip

SET_BY_CHART = {
    "--leader-elect": "on unless leaderElection.enabled is false (--no-leader-elect above)",
    "--namespace": "the release namespace, through the POD_NAMESPACE downward-API variable",
    "--policy-config": "the file of the policy ConfigMap rendered from policyConfig",
}
NOT_A_VALUE = {
    "--kubeconfig": "in a pod the controller authenticates as its ServiceAccount",
    "--identity": "must differ between replicas: the pod name plus a random suffix",
}


def run_options() -> dict[str, Any]:
    import typer

    from dlscaler.cli import app

    run = typer.main.get_command(app).get_command(None, "run")  # type: ignore[attr-defined]
    assert run is not None, "dlscaler run is missing"
    return {o: p for p in run.params for o in (*p.opts, *p.secondary_opts)}


def nested(path: str, value: Any) -> Values:
    out: Values = {}
    node = out
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    if path == "leaderElection.enabled" and value is False:
        out["replicaCount"] = 1  # two replicas need a leader
    return out


def args_for(tmp_path: Path, values: Values) -> list[str]:
    deploy = only(render(*values_file(tmp_path, values)), "Deployment")
    args: list[str] = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_every_option_is_a_value_set_by_the_chart_or_has_a_reason() -> None:
    options = set(run_options()) - {"--help"}
    accounted = set(SET_BY_VALUE) | set(SET_BY_CHART) | set(NOT_A_VALUE)
    assert options - accounted == set(), "dlscaler run options with no chart value"
    assert accounted - options == set(), "chart values for options dlscaler run no longer has"


@pytest.mark.parametrize("option", sorted(SET_BY_VALUE))
def test_the_value_sets_the_option(tmp_path: Path, option: str) -> None:
    path, value, arg = SET_BY_VALUE[option]
    assert arg not in args_for(tmp_path, {}), f"{arg} is there by default: pick another value"
    assert arg in args_for(tmp_path, nested(path, value))


def test_the_chart_derived_options() -> None:
    docs = render("--set", "policyConfig.policy=predictive")
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--leader-elect" in container["args"]
    assert "--namespace=$(POD_NAMESPACE)" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "policy")
    assert f"--policy-config={mount['mountPath']}/policy.yaml" in container["args"]
    policy = only(docs, "ConfigMap", "dlscaler-policy")
    assert "predictive" in policy["data"]["policy.yaml"]


def test_named_objects_follow_their_values(tmp_path: Path) -> None:
    """The Lease and state ConfigMap names reach the objects and the Role, not only the
    arguments: a renamed ConfigMap the controller may not write would fail at runtime. The
    finished-jobs ConfigMap follows the state ConfigMap's name (the controller adds
    ``-runtimes`` to it)."""
    from controller.runtimes import SUFFIX

    values = {
        "controller": {"stateConfigMapName": "ml-state"},
        "leaderElection": {"leaseName": "ml-leader"},
    }
    docs = render(*values_file(tmp_path, values))
    assert only(docs, "ConfigMap", "ml-state")
    assert only(docs, "ConfigMap", "ml-state" + SUFFIX)
    assert only(docs, "Lease", "ml-leader")
    names = {n for rule in only(docs, "Role")["rules"] for n in rule.get("resourceNames", [])}
    assert {"ml-state", "ml-state" + SUFFIX, "ml-leader"} <= names


def schema_node(path: str) -> Values:
    import json

    node: Values = json.loads((CHART / "values.schema.json").read_text())
    for key in path.split("."):
        node = node["properties"][key]
    return node


def numeric_options() -> list[tuple[str, str, float]]:
    """(option, value path, the command's lower bound) of options with a lower bound."""
    out = []
    for option, param in sorted(run_options().items()):
        low = getattr(param, "min", None)
        if option in SET_BY_VALUE and low is not None:
            out.append((option, SET_BY_VALUE[option][0], float(low)))
    return out


def test_bounded_options_are_the_ones_expected() -> None:
    """The bounds check below must keep seeing the options it was written for."""
    found = {o for o, _, _ in numeric_options()}
    assert {"--interval", "--min-pass-gap", "--call-timeout", "--worker-schedule-timeout",
            "--history-step", "--persist-every", "--lease-duration"} <= found  # fmt: skip


@pytest.mark.parametrize(("option", "path", "low"), numeric_options(), ids=str)
def test_the_schema_refuses_what_the_command_would_refuse(
    tmp_path: Path, option: str, path: str, low: float
) -> None:
    node = schema_node(path)
    schema_low = node.get("minimum", node.get("exclusiveMinimum"))
    assert schema_low is not None and schema_low >= low, (
        f"{path}: the schema lets through values below {option}'s minimum {low}"
    )
    below = low - 0.05 if low > 0 else -1
    proc = template(*values_file(tmp_path, nested(path, below)), check=False)
    assert proc.returncode != 0, f"{path}={below} rendered: the pod would crash-loop"
    assert f"at '/{path.replace('.', '/')}'" in proc.stderr, proc.stderr


def test_a_renew_interval_too_close_to_the_lease_duration_is_refused(tmp_path: Path) -> None:
    values = {"leaderElection": {"leaseDurationSeconds": 15, "renewIntervalSeconds": 10}}
    proc = template(*values_file(tmp_path, values), check=False)
    assert proc.returncode != 0
    assert "renewIntervalSeconds must be less than two thirds" in proc.stderr


def test_install_guide_maps_each_option_to_its_value() -> None:
    text = (ROOT / "docs" / "install.md").read_text()
    rows: dict[str, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`--"):
            for option in re.findall(r"`(--[a-z-]+)`", cells[0]):
                rows[option] = cells[1]
    options = set(run_options()) - {"--help"}
    assert set(rows) == options, sorted(set(rows) ^ options)
    for option, (path, _, _) in SET_BY_VALUE.items():
        assert f"`{path}`" in rows[option], f"install.md: {option} should say `{path}`"


def test_default_values_render_a_deployment_with_every_bounded_option() -> None:
    args = only(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    given = {a.split("=", 1)[0] for a in args}
    missing = sorted(o for o, _, _ in numeric_options() if o not in given)
    assert not missing, f"the Deployment leaves {missing} to the command's defaults"
