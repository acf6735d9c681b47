"""The container image's basics, checked statically (no Docker engine on these machines).

The Dockerfile is read the way the builder reads it (continuation lines joined, comments
dropped, ARG defaults substituted into FROM) and split into stages.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def runs(self) -> str:
        return "\n".join(self.args("RUN"))


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, rest) per instruction: comments dropped, continuations joined."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # the builder drops comment lines, even inside a continuation
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return out


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            image, _, alias = rest.partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], image)
            stages.append(Stage(image=image.strip(), name=alias.strip()))
        elif not stages and keyword == "ARG":
            key, _, default = rest.partition("=")
            global_args[key] = default
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        else:
            pytest.fail(f"instruction {keyword} before the first FROM")
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


def test_dockerfile_is_multi_stage_with_a_named_build_stage(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    build_names = {s.name for s in stages[:-1]}
    copied_from = {
        m[1] for rest in stages[-1].args("COPY") for m in re.finditer(r"--from=(\S+)", rest)
    }
    assert copied_from and copied_from <= build_names, (
        f"the final stage copies from {copied_from}, not from an earlier stage {build_names}"
    )


def test_every_base_image_is_pinned_by_version_and_digest(stages: list[Stage]) -> None:
    for stage in stages:
        m = re.fullmatch(r"([\w./-]+):([\w.-]+)@sha256:([0-9a-f]{64})", stage.image)
        assert m, f"FROM {stage.image}: pin a tag and its sha256 digest"
        assert re.match(r"\d+\.\d+\.\d+", m[2]), f"{stage.image}: tag without a patch version"


def test_base_python_satisfies_requires_python(stages: list[Stage]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = re.fullmatch(r">=(\d+)\.(\d+)", project["requires-python"])
    assert needed, project["requires-python"]
    for stage in stages:
        m = re.search(r"python:(\d+)\.(\d+)\.", stage.image)
        assert m, f"{stage.image} is not a python image"
        assert (int(m[1]), int(m[2])) >= (int(needed[1]), int(needed[2]))


def test_final_stage_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    users = stages[-1].args("USER")
    assert users, "the final stage sets no USER: the container would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: use a numeric non-zero uid"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # The chart's podSecurityContext runs the same uid.
    values = yaml.safe_load((ROOT / "helm/dlscaler/values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)


def test_final_stage_has_no_build_tools(stages: list[Stage]) -> None:
    final = stages[-1]
    runs = final.runs()
    for tool in ("gcc", "g++", "build-essential", "make ", "apt-get install", "apk add"):
        assert tool not in runs, f"the final stage installs {tool.strip()}"
    assert re.search(r"pip uninstall --yes pip setuptools wheel", runs), (
        "the final stage keeps the base image's pip"
    )
    build_runs = "\n".join(s.runs() for s in stages[:-1])
    assert re.search(r"/opt/dlscaler/bin/python -m pip uninstall --yes pip", build_runs), (
        "the virtualenv copied into the final image still holds pip"
    )
    assert not final.args("ADD"), "ADD fetches and unpacks: COPY what is needed instead"


def test_package_is_installed_from_the_repository_sources(stages: list[Stage]) -> None:
    build = stages[0]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {rest.split()[0] for rest in build.args("COPY")}
    missing = packages - copied
    assert not missing, f"packages not copied into the build stage: {sorted(missing)}"
    assert any(re.search(r"pip install (--no-deps )?\.(\s|$)", r) for r in build.args("RUN"))
    # Not editable: the final image has no /src to point at.
    assert "pip install -e" not in build.runs()
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, ".dockerignore should ignore everything (*) and allow-list the sources"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    needed = packages | {"pyproject.toml", "README.md"}
    assert needed <= allowed, f".dockerignore leaves out {sorted(needed - allowed)}"


def test_entrypoint_runs_the_controller(stages: list[Stage]) -> None:
    final = stages[-1]
    assert final.args("ENTRYPOINT")[-1] == '["dlscaler"]'
    assert final.args("CMD")[-1] == '["run"]'


def test_image_and_chart_versions_match_the_package(stages: list[Stage]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((ROOT / "helm/dlscaler/Chart.yaml").read_text())
    assert chart["appVersion"] == version
    labels = " ".join(stages[-1].args("LABEL"))
    assert f'org.opencontainers.image.version="{version}"' in labels


def test_parser_sees_continuations_and_comments() -> None:
    text = "ARG B=img:1.2.3\nFROM ${B} AS x\n# c\nRUN a \\\n# inner\n && b\nFROM $B\nUSER 1\n"
    args, parsed = parse(text)
    assert args == {"B": "img:1.2.3"}
    assert [s.image for s in parsed] == ["img:1.2.3", "img:1.2.3"]
    assert parsed[0].args("RUN") == ["a  && b"]
    assert parsed[1].args("USER") == ["1"]
