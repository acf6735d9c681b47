"""The Helm chart rendered by the real helm binary: lint, objects, secure defaults, values."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import yaml
from chart_harness import CHART, CLOUD_VALUES, ROOT, Doc, only, render, run_helm, template

from dlscaler.config import PolicyConfig, parse_policy_config, parse_pools

CLOUDS = [None, "aws", "gcp", "azure"]
AWS_ROLE = "arn:aws:iam::111122223333:role/dlscaler-controller"
GCP_SA = "dlscaler@ml-platform-prod.iam.gserviceaccount.com"


def cloud_args(cloud: str | None) -> list[str]:
    return ["-f", str(CLOUD_VALUES[cloud])] if cloud else []


@pytest.mark.parametrize("cloud", CLOUDS, ids=lambda c: c or "default")
def test_helm_lint_is_clean(cloud: str | None) -> None:
    proc = run_helm("lint", "--strict", str(CHART), "--kube-version", "1.36.5", *cloud_args(cloud))
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


@pytest.mark.parametrize("cloud", CLOUDS, ids=lambda c: c or "default")
def test_template_renders_every_controller_object(cloud: str | None) -> None:
    docs = render(*cloud_args(cloud))
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    expected = [
        "ClusterRole/dlscaler",
        "ClusterRoleBinding/dlscaler",
        "ConfigMap/dlscaler-policy",
        "ConfigMap/dlscaler-state",
        "ConfigMap/dlscaler-state-runtimes",
        "Deployment/dlscaler",
        "Lease/dlscaler-leader",
        "PodDisruptionBudget/dlscaler",
        "Role/dlscaler",
        "RoleBinding/dlscaler",
        "Service/dlscaler-metrics",
        "ServiceAccount/dlscaler",
    ]
    pools = []
    if cloud:
        values = yaml.safe_load(CLOUD_VALUES[cloud].read_text())
        pools = [f"NodePool/{p['name']}" for p in values["nodePools"]]
        assert pools, f"values-{cloud}.yaml should show NodePools"
    assert kinds == sorted(expected + pools)
    for d in docs:
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding", "NodePool"):
            assert d["metadata"]["namespace"] == "dlscaler-system", d["metadata"]["name"]
        assert d["metadata"]["labels"]["app.kubernetes.io/instance"] == "dlscaler"


def test_deployment_is_secure_and_highly_available_by_default() -> None:
    docs = render()
    deploy = only(docs, "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "dlscaler"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    # Only /tmp is writable, and the policy is mounted from its ConfigMap.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"]
    assert volumes[mounts["/etc/dlscaler"]]["configMap"]["name"] == "dlscaler-policy"
    pdb = only(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= (
        spec["template"]["metadata"]["labels"].items()
    )


def test_policy_change_rolls_the_pods() -> None:
    def checksum(*args: str) -> str:
        deploy = only(render(*args), "Deployment")
        return str(deploy["spec"]["template"]["metadata"]["annotations"]["checksum/policy"])

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "policyConfig.idleTimeoutSeconds=900")


def test_single_replica_without_leader_election_and_no_pdb() -> None:
    docs = render("--set", "replicaCount=1", "--set", "leaderElection.enabled=false")
    kinds = {d["kind"] for d in docs}
    assert "PodDisruptionBudget" not in kinds, "a PDB with minAvailable 1 of 1 blocks drains"
    assert "Lease" not in kinds


def test_two_replicas_without_leader_election_are_refused() -> None:
    proc = template("--set", "leaderElection.enabled=false", check=False)
    assert proc.returncode != 0
    assert "replicaCount > 1 needs leaderElection.enabled" in proc.stderr


@pytest.mark.parametrize(
    ("cloud", "annotations", "pod_label"),
    [
        ("aws", {"eks.amazonaws.com/role-arn": AWS_ROLE}, None),
        ("gcp", {"iam.gke.io/gcp-service-account": GCP_SA}, None),
        (
            "azure",
            {
                "azure.workload.identity/client-id": "11111111-2222-3333-4444-555555555555",
                "azure.workload.identity/tenant-id": "66666666-7777-8888-9999-000000000000",
            },
            "azure.workload.identity/use",
        ),
    ],
)  # fmt: skip
def test_service_account_carries_the_cloud_identity(
    cloud: str, annotations: dict[str, str], pod_label: str | None
) -> None:
    docs = render(*cloud_args(cloud))
    sa = only(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"] == annotations
    labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    if pod_label:
        assert labels[pod_label] == "true"
    assert "azure.workload.identity/use" not in labels or cloud == "azure"


def test_default_service_account_has_no_cloud_identity() -> None:
    sa = only(render(), "ServiceAccount")
    assert "annotations" not in sa["metadata"]


def test_existing_service_account_must_be_named() -> None:
    proc = template("--set", "serviceAccount.create=false", check=False)
    assert proc.returncode != 0 and "serviceAccount.name is required" in proc.stderr
    docs = render("--set", "serviceAccount.create=false", "--set", "serviceAccount.name=ops")
    assert "ServiceAccount" not in {d["kind"] for d in docs}
    assert only(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    binding = only(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ops", "namespace": "dlscaler-system"}
    ]


def test_image_digest_wins_over_tag() -> None:
    digest = "sha256:" + "ab" * 32
    image = only(render("--set", f"image.digest={digest}"), "Deployment")["spec"]["template"][
        "spec"
    ]["containers"][0]["image"]
    assert image == f"dlscaler@{digest}"
    image = only(render("--set", "image.tag=0.2.0"), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]["image"]
    assert image == "dlscaler:0.2.0"


def policy_from_render(docs: list[Doc]) -> PolicyConfig:
    text = only(docs, "ConfigMap", "dlscaler-policy")["data"]["policy.yaml"]
    return parse_policy_config(yaml.safe_load(text), source="rendered ConfigMap")


def test_default_policy_values_are_the_parsers_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert parse_policy_config(values["policyConfig"], source="values.yaml") == PolicyConfig()
    assert policy_from_render(render()) == PolicyConfig()


def test_tuned_yaml_drops_into_helm_unchanged(tmp_path: Path) -> None:
    """`dlscaler tune` output goes to `helm install -f` as it is, and the controller reads
    back exactly the tuned configuration."""
    import subprocess
    import sys

    trace = tmp_path / "trace.csv"
    out = tmp_path / "tune"
    dlscaler = [sys.executable, "-m", "dlscaler.cli"]
    subprocess.run([*dlscaler, "gen-trace", "--jobs", "40", "--days", "1", "--out", str(trace)],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run(
        [*dlscaler, "tune", "--trace", str(trace), "--policy", "predictive", "--trials", "2",
         "--workers", "1", "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    tuned_file = out / "tuned.yaml"
    tuned = parse_policy_config(yaml.safe_load(tuned_file.read_text()), source=str(tuned_file))
    assert tuned.policy == "predictive"
    assert policy_from_render(render("-f", str(tuned_file))) == tuned


def test_non_default_policy_survives_rendering(tmp_path: Path) -> None:
    policy = {
        "policy": "predictive",
        "idleTimeoutSeconds": 1234.5,
        "queueOrdering": "fair-share",
        "expander": "priority",
        "fairShareWeights": {"research": 0.5, "prod": 3},
        "poolPriorities": {"a100": 10, "h100": -1},
        "staticNodes": {"a100": 2},
        "maxScaleUpNodes": 1_000_000,
        "decisionIntervalSeconds": 15,
        "predictive": {"quantile": 0.95, "leadTimeFactor": 2.5, "headroomGpus": 16,
                       "scaleDownQuantile": 0.25, "maxErrorRatio": 1.2, "hysteresisNodes": 0},
    }  # fmt: skip
    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump({"policyConfig": policy}))
    rendered = policy_from_render(render("-f", str(values)))
    assert rendered == parse_policy_config(policy)
    assert rendered.max_scale_up_nodes == 1_000_000  # no float formatting (1e+06) on the way


def test_nodepool_values_render_as_nodepools_the_parser_accepts() -> None:
    for cloud, path in CLOUD_VALUES.items():
        values = yaml.safe_load(path.read_text())
        docs = [d for d in render("-f", str(path)) if d["kind"] == "NodePool"]
        assert [d["metadata"]["name"] for d in docs] == [p["name"] for p in values["nodePools"]]
        for doc, pool in zip(docs, values["nodePools"], strict=True):
            assert doc["apiVersion"] == "dlscaler.io/v1alpha1"
            assert "namespace" not in doc["metadata"], "NodePools are cluster-scoped"
            assert doc["spec"] == {k: v for k, v in pool.items() if k != "name"}
        models = parse_pools(docs, source=f"values-{cloud}.yaml")
        assert {m.provider for m in models} == {cloud}


def test_nodepool_min_above_max_is_refused(tmp_path: Path) -> None:
    values = tmp_path / "v.yaml"
    pool = {"name": "a", "provider": "kwok", "gpusPerNode": 8, "minNodes": 3, "maxNodes": 2,
            "pricePerHour": 1}  # fmt: skip
    values.write_text(yaml.safe_dump({"nodePools": [{"name": "ok", "provider": "kwok",
                      "gpusPerNode": 8, "maxNodes": 2, "pricePerHour": 1}, pool]}))  # fmt: skip
    proc = template("-f", str(values), check=False)
    assert proc.returncode != 0
    message = "nodePools[1] (a): minNodes (3) must be less than or equal to maxNodes (2)"
    assert message in proc.stderr


def test_monitoring_objects_render_when_enabled() -> None:
    docs = render(
        "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.prometheusRule.enabled=true",
        "--set", "metrics.serviceMonitor.labels.release=prometheus",
    )  # fmt: skip
    monitor = only(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = only(docs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    rule = only(docs, "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"DlscalerProviderErrors", "DlscalerProvisioningStuck", "DlscalerPendingGpus"} <= alerts
    without = {d["kind"] for d in render()}
    assert not {"ServiceMonitor", "PrometheusRule"} & without


def test_chart_crds_are_the_repository_crds(tmp_path: Path) -> None:
    """The chart's crds/ is a symlink to the repository's crds/ (one source); `helm package`
    must put the files themselves into the archive, byte for byte."""
    link = CHART / "crds"
    assert link.is_symlink() and link.resolve() == (ROOT / "crds").resolve()
    sources = {p.name: p.read_bytes() for p in sorted((ROOT / "crds").glob("*.yaml"))}
    assert len(sources) == 3, sorted(sources)
    run_helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("dlscaler-*.tgz")
    packaged: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.startswith("dlscaler/crds/"):
                assert member.isfile(), f"{member.name} is not a regular file in the archive"
                f = tar.extractfile(member)
                assert f is not None
                packaged[member.name.removeprefix("dlscaler/crds/")] = f.read()

    def digests(files: dict[str, bytes]) -> dict[str, str]:
        return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}

    assert digests(packaged) == digests(sources)
    rendered = template("--include-crds").stdout
    names = {
        d["metadata"]["name"]
        for d in yaml.safe_load_all(io.StringIO(rendered))
        if d and d["kind"] == "CustomResourceDefinition"
    }
    assert names == {"dljobs.dlscaler.io", "dlservices.dlscaler.io", "nodepools.dlscaler.io"}


def test_cloud_values_files_document_what_they_set() -> None:
    for path in CLOUD_VALUES.values():
        text = path.read_text()
        assert text.startswith("# dlscaler on "), path
        assert "docs/install.md" in text


def test_every_value_is_documented_in_values_yaml() -> None:
    """Each value of values.yaml has a comment right above it, or sits inside a documented
    block (the members of `resources` or `securityContext` are Kubernetes' own fields).
    Group keys (`image:`, `metrics:`) need no comment of their own."""
    undocumented = []
    ancestors: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    previous = ""
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith(("#", "- ")) and ":" in stripped:
            indent = len(line) - len(line.lstrip())
            while ancestors and ancestors[-1][0] >= indent:
                ancestors.pop()
            documented = previous.startswith("#") or any(doc for _, doc in ancestors)
            is_group = stripped.endswith(":")
            if not documented and not is_group:
                undocumented.append(f"line {number}: {stripped.split(':', 1)[0]}")
            ancestors.append((indent, previous.startswith("#")))
        previous = stripped
    assert not undocumented, f"values.yaml values without a comment: {undocumented}"


def test_every_controller_argument_the_chart_passes_exists(tmp_path: Path) -> None:
    """The Deployment's args against `dlscaler run`'s own options, with every optional one
    switched on, so a renamed option fails here rather than in a CrashLoopBackOff."""
    import typer

    from dlscaler.cli import app

    values = {
        "controller": {
            "watchNamespaces": ["a", "b"],
            "nodePoolSelector": "team=ml",
            "prometheusUrl": "http://prometheus:9090",
            "extraArgs": [],
        }
    }
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump(values))
    args_by_mode = []
    for extra in ([], ["--set", "replicaCount=1", "--set", "leaderElection.enabled=false"]):
        deploy = only(render("-f", str(path), *extra), "Deployment")
        args_by_mode.append(deploy["spec"]["template"]["spec"]["containers"][0]["args"])
    run = typer.main.get_command(app).get_command(None, "run")  # type: ignore[attr-defined]
    assert run is not None, "dlscaler run is missing"
    options = {o for p in run.params for o in (*p.opts, *p.secondary_opts)}
    for args in args_by_mode:
        assert args[0] == "run"
        for arg in args[1:]:
            assert arg.split("=", 1)[0] in options, f"dlscaler run has no {arg.split('=')[0]}"
    flat = " ".join(args_by_mode[0])
    for expected in ("--watch-namespace=a", "--watch-namespace=b", "--nodepool-selector=team=ml",
                     "--prometheus-url=http://prometheus:9090", "--leader-elect"):  # fmt: skip
        assert expected in flat
    assert "--no-leader-elect" in args_by_mode[1]
