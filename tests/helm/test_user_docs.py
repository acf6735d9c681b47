"""The user documentation in docs/ stays true: generated parts are fresh, links resolve, and
what the pages list (permissions, RBAC, metrics, commands) matches the code."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_harness import CLOUD_VALUES, ROOT, only, render

DOCS = ROOT / "docs"
USER_DOCS = ["install.md", "reference.md", "policies.md", "metrics.md", "troubleshooting.md"]


def read(name: str) -> str:
    return (DOCS / name).read_text()


def gen_reference(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen-reference.py"), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_reference_is_generated_from_the_current_crds() -> None:
    proc = gen_reference("--check")
    assert proc.returncode == 0, proc.stderr


def test_reference_check_fails_when_a_crd_changes(tmp_path: Path) -> None:
    crds = tmp_path / "crds"
    shutil.copytree(ROOT / "crds", crds)
    path = crds / "dlscaler.io_nodepools.yaml"
    crd = yaml.safe_load(path.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["maxNodes"]["description"] = "A changed description."
    path.write_text(yaml.safe_dump(crd))
    proc = gen_reference("--check", "--crds", str(crds))
    assert proc.returncode == 1
    assert "out of date" in proc.stderr and "hack/gen-reference.py" in proc.stderr


def test_reference_documents_every_spec_field() -> None:
    text = read("reference.md")
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        kind = crd["spec"]["names"]["kind"]
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        section = text.split(f"## {kind}\n", 1)[1].split("\n## ", 1)[0]
        for field in spec["properties"]:
            assert f"| `{field}` |" in section, f"{kind}.spec.{field} missing from reference.md"


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors, plus explicit <a id=...>."""
    found = set(re.findall(r'<a id="([^"]+)"', markdown))
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("name", USER_DOCS)
def test_relative_links_and_anchors_resolve(name: str) -> None:
    text = read(name)
    text_without_code = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    for target in re.findall(r"\]\(([^)\s]+)\)", text_without_code):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (DOCS / path).resolve() if path else DOCS / name
        assert resolved.exists(), f"{name}: link to {target} points nowhere"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved.read_text()), f"{name}: no #{anchor} in {path}"


def test_install_guide_lists_every_cloud_permission_the_adapters_use() -> None:
    """The IAM/role snippets must grant what providers/ calls, or installs fail at runtime."""
    pattern = re.compile(
        r'"((?:autoscaling|ec2|eks):[A-Za-z]+|compute\.[a-zA-Z]+\.[a-z]+'
        r'|Microsoft\.Compute/[A-Za-z/]+)"'
    )
    used = set()
    for source in sorted((ROOT / "providers").glob("*.py")):
        used |= set(pattern.findall(source.read_text()))
    assert len(used) >= 10, f"found only {sorted(used)}: has the adapters' style changed?"
    install = read("install.md")
    missing = sorted(p for p in used if p not in install)
    assert not missing, f"docs/install.md does not grant {missing}"


def rbac_table() -> set[tuple[str, str, str]]:
    section = read("install.md").split("## What the controller may do (RBAC)", 1)[1]
    rows = set()
    for line in section.split("\n## ", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] not in ("cluster", "namespace"):
            continue
        resources = re.findall(r"`([^`]+)`", cells[1])
        if cells[0] == "namespace":
            resources = resources[:1]  # `leases` `dlscaler-leader`: the name follows
        for resource in resources:
            for verb in re.findall(r"[a-z]+", cells[2]):
                rows.add((cells[0], resource, verb))
    return rows


def test_install_guide_rbac_table_is_what_the_chart_grants() -> None:
    docs = render("--set", "rbac.kwokNodes=true")
    granted = set()
    for kind, scope in (("ClusterRole", "cluster"), ("Role", "namespace")):
        for rule in only(docs, kind)["rules"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((scope, resource, verb))
    assert rbac_table() == granted


def shell_commands(markdown: str) -> list[list[str]]:
    """Each `dlscaler ...` command in the page's sh blocks, as words."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = line.split("#", 1)[0].split()
            if words[:1] == ["dlscaler"]:
                commands.append(words[1:])
    return commands


@pytest.mark.parametrize("name", ["install.md", "policies.md", "troubleshooting.md"])
def test_dlscaler_commands_in_the_docs_exist(name: str) -> None:
    import typer

    from dlscaler.cli import app

    root = typer.main.get_command(app)
    for words in shell_commands(read(name)):
        cmd: Any = root
        rest = list(words)
        # A group has get_command (typer's command classes need not subclass click's).
        while hasattr(cmd, "get_command") and rest and not rest[0].startswith("-"):
            sub = cmd.get_command(None, rest[0])
            assert sub is not None, f"{name}: `dlscaler {' '.join(words)}`: no command {rest[0]}"
            cmd, rest = sub, rest[1:]
        options = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
        for word in rest:
            option = word.split("=", 1)[0]
            if option.startswith("--"):
                assert option in options, f"{name}: `dlscaler {' '.join(words)}`: no {option}"


def test_pools_conversion_snippet_turns_values_into_a_pools_file(tmp_path: Path) -> None:
    from dlscaler.config import parse_pools

    block = next(
        b for b in re.findall(r"```sh\n(.*?)```", read("policies.md"), flags=re.DOTALL)
        if "python -c" in b
    )  # fmt: skip
    script = re.search(r"python -c '([^']+)'", block)
    assert script, block
    values = CLOUD_VALUES["gcp"]
    out = subprocess.run(
        [sys.executable, "-c", script[1], str(values)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    pools = parse_pools(yaml.safe_load(out), source="converted values")
    names = [p["name"] for p in yaml.safe_load(values.read_text())["nodePools"]]
    assert [p.name for p in pools] == names


def controller_metric_names() -> set[str]:
    from controller.metrics import Metrics

    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_metrics_page_lists_exactly_the_exported_metrics() -> None:
    exported = controller_metric_names()
    documented = set(re.findall(r"^\| `(dlscaler_[a-z_]+)` \|", read("metrics.md"), re.M))
    assert documented == exported


def test_alert_rules_use_only_exported_metrics() -> None:
    exported = controller_metric_names()
    rule = only(render("--set", "metrics.prometheusRule.enabled=true"), "PrometheusRule")
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    used = set(re.findall(r"\bdlscaler_[a-z_]+\b", exprs))
    assert used and used <= exported, sorted(used - exported)
    documented = set(re.findall(r"^\| `(Dlscaler\w+)` \|", read("metrics.md"), re.M))
    assert documented == {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}


def controller_reasons() -> set[str]:
    """Event reasons, condition types and condition reasons in the controller's code."""
    names: set[str] = set()
    for source in sorted((ROOT / "controller").glob("*.py")):
        if source.name.startswith("devcluster"):
            continue
        text = source.read_text()
        # Events: record(obj, NORMAL, "Reason", ...), step.event(WARNING, "Reason", ...)
        names |= set(
            re.findall(r"(?:\bNORMAL|\bWARNING|\"Normal\"|\"Warning\")\s*,\s*\"(\w+)\"", text)
        )
        # A reason chosen by an expression: reason = "A" if ... else "B"
        for line in re.findall(r"^\s*reason\s*=\s*(.+)$", text, flags=re.MULTILINE):
            names |= set(re.findall(r"\"([A-Z]\w+)\"", line))
        # Failure reasons handed to the helper that writes the Failed condition and Event.
        names |= set(re.findall(r"_fail\([^\"()]*?\"(\w+)\"", text))
        # Conditions: condition("Type", status, "Reason", ...) and ("Type", bool, "Reason", ...)
        for pattern in (
            r"condition\(\s*\"(\w+)\"\s*,[^,]+,\s*\"(\w+)\"",
            r"\(\s*\"(\w+)\"\s*,\s*(?:True|False)\s*,\s*\"(\w+)\"",
        ):
            for kind, reason in re.findall(pattern, text):
                names |= {kind, reason}
        names |= set(re.findall(r"\"type\":\s*\"([A-Z]\w+)\"", text))
        # A verdict whose reason follows its status: Schedulability(False, "Reason", ...)
        names |= set(re.findall(r"\(\s*(?:True|False)\s*,\s*\"([A-Z]\w+)\"", text))
    return names - {"Normal", "Warning"}  # NORMAL, WARNING = "Normal", "Warning"


def test_troubleshooting_explains_every_event_and_condition() -> None:
    names = controller_reasons()
    # The extraction must keep finding what it was written for.
    assert {
        "Admitted", "Unschedulable", "ScaledUp", "ScaleFailed", "DeadlineExceeded", "Rescaled",
        "Schedulable", "NoFittingPool", "Available", "BackedOff", "NoPoolOffersGpuType",
    } <= names  # fmt: skip
    documented = set(re.findall(r"`([A-Z]\w+)`", read("troubleshooting.md")))
    missing = sorted(names - documented)
    assert not missing, (
        f"Events/conditions the controller writes, not in troubleshooting.md: {missing}"
    )
