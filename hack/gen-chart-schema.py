#!/usr/bin/env python3
"""Fill in the derived parts of the Helm chart's values.schema.json.

Two sections of ``helm/dlscaler/values.schema.json`` restate rules that live elsewhere,
so they are generated, never edited by hand:

* ``definitions.policyConfig`` from the pydantic model ``dlscaler.config.parse_policy_config``
  validates with: the same keys, enums and bounds, so a tuned policy that the simulator
  accepts is accepted by ``helm install`` and vice versa (except ``oracle``, see below);
* ``definitions.nodePool`` from the NodePool CRD's ``spec`` schema in ``crds/`` plus the
  ``name`` of a pools-file entry, so ``nodePools`` values fail at ``helm template`` time with
  the same bounds the API server would apply.

    hack/gen-chart-schema.py           rewrite values.schema.json
    hack/gen-chart-schema.py --check   exit 1 if it is out of date (a test runs this)

The rest of the file (the chart's own values) is hand-written; this script only re-indents it.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlscaler.config import PoolModel, _PolicyModel  # noqa: E402

SCHEMA = ROOT / "helm" / "dlscaler" / "values.schema.json"
NODEPOOL_CRD = ROOT / "crds" / "dlscaler.io_nodepools.yaml"

Schema = dict[str, Any]

POLICY_NOTE = (
    "static-peak, reactive or predictive. oracle is left out: it needs every job's runtime "
    "in advance, which only the simulator knows."
)

# OpenAPI/JSON Schema keywords a CRD schema uses that mean the same in draft-07.
_PLAIN_KEYS = (
    "type",
    "description",
    "enum",
    "default",
    "pattern",
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "required",
)


def _resolve_refs(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/$defs/")
            return _resolve_refs(defs[name], defs)
        return {k: _resolve_refs(v, defs) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_resolve_refs(v, defs) for v in node]
    return node


def policy_config_schema() -> Schema:
    """The JSON schema of the policy mapping, as parse_policy_config validates it."""
    raw = _PolicyModel.model_json_schema(by_alias=True, mode="validation")
    schema: Schema = _resolve_refs(raw, raw.get("$defs", {}))
    schema.pop("$defs", None)
    props = schema["properties"]
    # pydantic checks these in a model validator, which its JSON schema cannot show.
    props["fairShareWeights"]["additionalProperties"]["exclusiveMinimum"] = 0
    props["policy"]["enum"] = [p for p in props["policy"]["enum"] if p != "oracle"]
    props["policy"]["description"] = POLICY_NOTE
    schema["description"] = (
        "The scaling policy, exactly as `dlscaler tune` writes it (dlscaler.config."
        "parse_policy_config); keys not given keep their defaults."
    )
    return schema


def _from_crd(node: Schema) -> Schema:
    """A CRD (OpenAPI v3.0 structural) schema as JSON Schema draft-07.

    Objects the API server would prune unknown fields from get ``additionalProperties:
    false`` instead, so a misspelt key fails loudly at ``helm template`` rather than
    vanishing on the server. CEL rules (``x-kubernetes-validations``) stay with the API
    server, except the ones :func:`nodepool_schema` restates.
    """
    out: Schema = {k: copy.deepcopy(node[k]) for k in _PLAIN_KEYS if k in node}
    if node.get("exclusiveMinimum") is True:  # OpenAPI 3.0's boolean form
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("exclusiveMaximum") is True:
        out["exclusiveMaximum"] = out.pop("maximum")
    if "anyOf" in node:
        out["anyOf"] = [_from_crd(n) for n in node["anyOf"]]
        if "pattern" in out:  # a Quantity: the pattern applies to its string form only
            pattern = out.pop("pattern")
            out["anyOf"] = [
                {**alt, "pattern": pattern} if alt.get("type") == "string" else alt
                for alt in out["anyOf"]
            ]
    if "items" in node:
        out["items"] = _from_crd(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _from_crd(node["additionalProperties"])
    if "properties" in node:
        out["properties"] = {k: _from_crd(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def nodepool_schema(crd: Schema) -> Schema:
    """One ``nodePools`` entry: the NodePool spec plus the object's ``name``."""
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    schema = _from_crd(spec)
    name_field = PoolModel.model_fields["name"]
    pattern = next(m.pattern for m in name_field.metadata if hasattr(m, "pattern"))
    max_length = next(m.max_length for m in name_field.metadata if hasattr(m, "max_length"))
    schema["properties"] = {
        "name": {
            "type": "string",
            "description": "The NodePool's metadata.name (cluster-wide unique).",
            "pattern": pattern,
            "maxLength": max_length,
        },
        **schema["properties"],
    }
    schema["required"] = ["name", *schema.get("required", [])]
    # The CRD's CEL rule "<cloud> settings are only allowed when provider is <cloud>".
    # (minNodes <= maxNodes is checked in templates/nodepools.yaml: JSON Schema cannot
    # compare two fields.)
    schema["allOf"] = [
        {
            "if": {"required": [cloud]},
            "then": {"properties": {"provider": {"const": cloud}}},
        }
        for cloud in spec["properties"]["provider"]["enum"]
        if cloud in spec["properties"]
    ]
    return schema


def render(current: Schema, crd: Schema) -> str:
    doc = copy.deepcopy(current)
    doc["definitions"]["policyConfig"] = policy_config_schema()
    doc["definitions"]["nodePool"] = nodepool_schema(crd)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    p.add_argument("--schema", type=Path, default=SCHEMA, help="values.schema.json to update")
    p.add_argument("--crd", type=Path, default=NODEPOOL_CRD, help="the NodePool CRD")
    args = p.parse_args(argv)
    text = args.schema.read_text()
    new = render(json.loads(text), yaml.safe_load(args.crd.read_text()))
    if args.check:
        if new != text:
            print(
                f"{args.schema} is out of date with dlscaler/config.py or {args.crd}: "
                "run hack/gen-chart-schema.py",
                file=sys.stderr,
            )
            return 1
        return 0
    args.schema.write_text(new)
    print(f"wrote {args.schema}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
