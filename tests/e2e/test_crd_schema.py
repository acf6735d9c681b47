"""The CRD files agree with the Python models that read the same objects (no cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

import providers.settings
from dlscaler.config import PoolModel, parse_pools

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS = {p.name: yaml.safe_load(p.read_text()) for p in sorted((REPO_ROOT / "crds").glob("*.yaml"))}


def spec_schema(plural: str) -> dict[str, Any]:
    crd = CRDS[f"dlscaler.io_{plural}.yaml"]
    [version] = crd["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"]["properties"]["spec"])


def aliases(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def test_nodepool_spec_fields_are_the_pool_model_fields() -> None:
    crd_fields = set(spec_schema("nodepools")["properties"])
    # name is metadata.name; simulation only matters to the simulator's pools files.
    assert crd_fields == aliases(PoolModel) - {"name", "simulation"}


def test_nodepool_required_fields_match_the_pool_model() -> None:
    required = {
        f.alias or n for n, f in PoolModel.model_fields.items() if f.is_required() and n != "name"
    }
    # provider has a default in pools files ("fake", for the simulator); a NodePool must say.
    assert set(spec_schema("nodepools")["required"]) == required | {"provider"}


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure", "kwok"])
def test_per_cloud_settings_match_the_adapter_settings(cloud: str) -> None:
    model = getattr(providers.settings, f"{cloud.capitalize()}Settings")
    assert set(spec_schema("nodepools")["properties"][cloud]["properties"]) == aliases(model)


def test_nodepool_examples_are_valid_pools_files() -> None:
    # A NodePool manifest doubles as a pools-file entry for the simulator.
    paths = sorted((REPO_ROOT / "examples").glob("nodepool-*.yaml"))
    assert len(paths) == 4
    pools = parse_pools([yaml.safe_load(p.read_text()) for p in paths], source="examples")
    assert {p.provider for p in pools} == {"aws", "gcp", "azure", "kwok"}


def test_crds_are_structural_and_describe_every_field() -> None:
    def walk(schema: dict[str, Any], path: str, in_template: bool) -> None:
        assert "$ref" not in schema and "allOf" not in schema, path
        if not schema.get("x-kubernetes-int-or-string") and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            assert "type" in schema, f"{path}: no type"
        if not in_template and not path.endswith("[]"):
            assert schema.get("description"), f"{path}: no description"
        for name, prop in schema.get("properties", {}).items():
            walk(prop, f"{path}.{name}", in_template or name == "template")
        if "items" in schema:
            walk(schema["items"], f"{path}[]", in_template)
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], f"{path}{{}}", True)

    for crd in CRDS.values():
        [version] = crd["spec"]["versions"]
        root = version["schema"]["openAPIV3Schema"]
        for part in ("spec", "status"):
            walk(root["properties"][part], f"{crd['spec']['names']['kind']}.{part}", False)
