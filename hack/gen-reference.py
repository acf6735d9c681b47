#!/usr/bin/env python3
"""Write docs/reference.md, the DLJob / DLService / NodePool reference, from crds/.

The CRDs' OpenAPI schemas are the one place the fields, their types, defaults, bounds,
patterns, immutability and cross-field rules are defined (and enforced by the API server);
this page is a rendering of them, so it cannot drift from what `kubectl apply` accepts.

    hack/gen-reference.py           rewrite docs/reference.md
    hack/gen-reference.py --check   exit 1 if docs/reference.md is out of date (a test runs this)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "crds"
OUT = ROOT / "docs" / "reference.md"
ORDER = ("DLJob", "DLService", "NodePool")
IMMUTABLE_RULE = "self == oldSelf"

Schema = dict[str, Any]


def load_crds(crd_dir: Path) -> list[Schema]:
    crds = [yaml.safe_load(p.read_text()) for p in sorted(crd_dir.glob("*.yaml"))]
    known = {c["spec"]["names"]["kind"] for c in crds}
    missing = set(ORDER) - known
    if missing:
        raise SystemExit(f"{crd_dir}: no CRD for {', '.join(sorted(missing))}")
    return sorted(crds, key=lambda c: ORDER.index(c["spec"]["names"]["kind"]))


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(value: Any) -> str:
    """A value as inline code (table cells escape their pipes in :func:`cell`)."""
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, dict | list):
        value = yaml.safe_dump(value, default_flow_style=True).strip()
    elif value == "":
        value = '""'
    text = str(value)
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def type_name(s: Schema) -> str:
    if s.get("x-kubernetes-int-or-string"):
        return "integer or string"
    t = s.get("type", "")
    if t == "array":
        return f"[]{type_name(s.get('items') or {})}"
    if t == "object" and isinstance(s.get("additionalProperties"), dict):
        return f"map[string]{type_name(s['additionalProperties'])}"
    if t == "string" and s.get("format") == "date-time":
        return "timestamp (RFC 3339)"
    if s.get("format") in ("int32", "int64"):
        return f"{t} ({s['format']})"
    return str(t or "any")


def constraints(s: Schema, required: bool) -> list[str]:
    out = []
    if required:
        out.append("**required**")
    if "enum" in s:
        out.append("one of " + ", ".join(code(v) for v in s["enum"]))
    lo, hi = s.get("minimum"), s.get("maximum")
    if lo is not None or hi is not None:
        left = "" if lo is None else f"{lo} {'<' if s.get('exclusiveMinimum') else '≤'} "
        right = "" if hi is None else f" {'<' if s.get('exclusiveMaximum') else '≤'} {hi}"
        out.append(f"{left}value{right}")
    for key, label in (
        ("minLength", "at least {} character(s)"),
        ("maxLength", "at most {} characters"),
        ("minItems", "at least {} item(s)"),
        ("maxItems", "at most {} items"),
        ("maxProperties", "at most {} entries"),
    ):
        if key in s:
            out.append(label.format(s[key]))
    items: Schema = s.get("items") or {}
    extra = s.get("additionalProperties")
    values: Schema = extra if isinstance(extra, dict) else {}
    parts: tuple[tuple[str, Schema], ...] = (
        ("", s),
        ("each item ", items),
        ("each value ", values),
    )
    for where, sub in parts:
        if "pattern" in sub:
            out.append(f"{where}matches {code(sub['pattern'])}")
        if where and "maxLength" in sub:
            out.append(f"{where}at most {sub['maxLength']} characters")
    for rule in s.get("x-kubernetes-validations") or []:
        if rule["rule"] == IMMUTABLE_RULE:
            out.append("immutable")
    if s.get("x-kubernetes-list-type") == "map":
        keys = ", ".join(s.get("x-kubernetes-list-map-keys") or [])
        out.append(f"a list keyed by {keys}")
    if s.get("x-kubernetes-preserve-unknown-fields"):
        out.append("unknown fields kept")
    return out


def fields(s: Schema, prefix: str = "") -> Iterator[tuple[str, Schema, bool]]:
    """(path, schema, required) for every field under ``s``, depth first.

    A pod ``template`` is not expanded: it is the core PodTemplateSpec, documented by
    `kubectl explain pod.spec`.
    """
    required = set(s.get("required") or [])
    for name, sub in (s.get("properties") or {}).items():
        path = f"{prefix}{name}"
        yield path, sub, name in required
        if name == "template" and "spec" in (sub.get("properties") or {}):
            continue
        if sub.get("properties"):
            yield from fields(sub, f"{path}.")
        items = sub.get("items") or {}
        if items.get("properties"):
            yield from fields(items, f"{path}[].")


def field_table(s: Schema) -> list[str]:
    lines = ["| Field | Type | Default | Rules | Description |", "|---|---|---|---|---|"]
    for path, sub, required in fields(s):
        default = code(sub["default"]) if "default" in sub else ""
        lines.append(
            f"| `{path}` | {cell(type_name(sub))} | {cell(default)} | "
            f"{cell('; '.join(constraints(sub, required)))} | {cell(sub.get('description', ''))} |"
        )
    return lines


def cross_field_rules(s: Schema, prefix: str = "") -> Iterator[tuple[str, Schema]]:
    """CEL rules other than immutability, with the path of the object they sit on."""
    for rule in s.get("x-kubernetes-validations") or []:
        if rule["rule"] != IMMUTABLE_RULE:
            yield prefix or "(object)", rule
    for name, sub in (s.get("properties") or {}).items():
        if name == "template":
            continue
        yield from cross_field_rules(sub, f"{prefix}.{name}" if prefix else name)
        if (sub.get("items") or {}).get("properties"):
            yield from cross_field_rules(sub["items"], f"{prefix}.{name}[]" if prefix else name)


def render_crd(crd: Schema) -> list[str]:
    names = crd["spec"]["names"]
    version = crd["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    kind = names["kind"]
    subresources = sorted(version.get("subresources") or {})
    lines = [
        f"## {kind}",
        "",
        cell(root.get("description", "")),
        "",
        f"- API: `{crd['spec']['group']}/{version['name']}`, kind `{kind}`, "
        f"{'namespaced' if crd['spec']['scope'] == 'Namespaced' else 'cluster-scoped'}",
        f"- Names: `{names['plural']}`, `{names['singular']}`"
        + "".join(f", `{n}`" for n in names.get("shortNames") or [])
        + f" (`kubectl get {names['plural']}`); category "
        + ", ".join(f"`{c}`" for c in names.get("categories") or []),
        f"- Subresources: {', '.join(f'`{s}`' for s in subresources) or 'none'}",
    ]
    scale = (version.get("subresources") or {}).get("scale")
    if scale:
        lines.append(
            f"- `kubectl scale` sets `{scale['specReplicasPath']}`; the current count is "
            f"`{scale['statusReplicasPath']}`, the pods' selector `{scale['labelSelectorPath']}`"
        )
    lines += ["", "### Spec", ""]
    spec = root["properties"]["spec"]
    if spec.get("description"):
        lines += [cell(spec["description"]), ""]
    lines += field_table(spec)
    if "template" in (spec.get("properties") or {}):
        lines += [
            "",
            "`template` is a core/v1 PodTemplateSpec (`metadata.labels`, "
            "`metadata.annotations`, `spec`), validated with the API server's own pod "
            "schema: see `kubectl explain pod.spec`.",
        ]
    rules = list(cross_field_rules(spec, "spec"))
    if rules:
        lines += ["", "Rules across fields (checked by the API server):", ""]
        for where, rule in rules:
            lines.append(f"- on `{where}`: {rule['message']}")
    lines += ["", "### Status", "", "Written by the controller through the status subresource.", ""]
    lines += field_table(root["properties"]["status"])
    columns = version.get("additionalPrinterColumns") or []
    if columns:
        lines += [
            "",
            "### Columns",
            "",
            f"`kubectl get {names['plural']}` shows the columns without a priority; "
            "`-o wide` adds the rest.",
            "",
            "| Column | From | Wide only |",
            "|---|---|---|",
        ]
        for c in columns:
            wide = "yes" if c.get("priority", 0) > 0 else ""
            lines.append(f"| {c['name']} | `{c['jsonPath']}` | {wide} |")
    return lines


def render(crds: list[Schema]) -> str:
    lines = [
        "# API reference: DLJob, DLService, NodePool",
        "",
        "<!-- Generated by hack/gen-reference.py from crds/. Do not edit: change the CRDs "
        "(hack/gen-crds.py) and re-run it. -->",
        "",
        "dlscaler's resources, group `dlscaler.io`, version `v1alpha1`. Everything here is "
        "enforced by the API server: `kubectl apply` of a spec that breaks a rule fails with "
        "a message naming the field. Examples: [`examples/`](../examples/).",
        "",
    ]
    for crd in crds:
        kind = crd["spec"]["names"]["kind"]
        lines.append(f"- [{kind}](#{kind.lower()})")
    for crd in crds:
        lines += ["", *render_crd(crd)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    p.add_argument("--crds", type=Path, default=CRD_DIR, help="directory of CRD YAML files")
    p.add_argument("--out", type=Path, default=OUT, help="the Markdown file to write")
    args = p.parse_args(argv)
    text = render(load_crds(args.crds))
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is out of date with {args.crds}: run hack/gen-reference.py",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
