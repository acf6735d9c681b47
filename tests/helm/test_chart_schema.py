"""values.schema.json: bad values fail `helm template` with the field's path, and the policy
part accepts exactly what the controller's parser accepts."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_harness import CHART, ROOT, template, values_file

from dlscaler.config import POLICY_NAMES, ConfigError, parse_policy_config

POOL = {"name": "a100", "provider": "kwok", "gpusPerNode": 8, "maxNodes": 4, "pricePerHour": 1.5}


def helm_error(tmp_path: Path, values: dict[str, Any]) -> str:
    """helm's complaint about ``values`` ('' if it renders)."""
    proc = template(*values_file(tmp_path, values), check=False)
    return "" if proc.returncode == 0 else proc.stderr


def test_schema_is_in_sync_with_config_model_and_crd() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen-chart-schema.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


INVALID = [
    # (values, the path helm must name, what it must say)
    ({"replicaCount": "two"}, "/replicaCount", "want integer"),
    ({"replicas": 2}, "", "additional properties 'replicas' not allowed"),
    ({"image": {"repository": "x", "pullPolicy": "Sometimes"}}, "/image/pullPolicy", "one of"),
    ({"image": {"repository": "x", "digest": "sha256:abc"}}, "/image/digest", "pattern"),
    ({"cloud": {"aws": {"roleArn": "my-role"}}}, "/cloud/aws/roleArn", "pattern"),
    ({"cloud": {"gcp": {"serviceAccount": "dlscaler"}}}, "/cloud/gcp/serviceAccount", "pattern"),
    ({"cloud": {"azure": {"clientId": "not-a-uuid"}}}, "/cloud/azure/clientId", "pattern"),
    ({"cloud": {"aws": {"role": "x"}}}, "/cloud/aws", "additional properties 'role'"),
    ({"controller": {"logLevel": "verbose"}}, "/controller/logLevel", "one of"),
    ({"leaderElection": {"leaseDurationSeconds": 1}}, "/leaderElection/leaseDurationSeconds",
     "minimum"),
    ({"policyConfig": {"policy": "oracle"}}, "/policyConfig/policy",
     "'static-peak', 'reactive', 'predictive'"),
    ({"policyConfig": {"policy": "magic"}}, "/policyConfig/policy", "one of"),
    ({"policyConfig": {"queueOrdering": "lifo"}}, "/policyConfig/queueOrdering", "one of"),
    ({"policyConfig": {"expander": "random"}}, "/policyConfig/expander", "one of"),
    ({"policyConfig": {"idleTimeout": 60}}, "/policyConfig",
     "additional properties 'idleTimeout' not allowed"),
    ({"policyConfig": {"idleTimeoutSeconds": -1}}, "/policyConfig/idleTimeoutSeconds", "minimum"),
    ({"policyConfig": {"maxScaleUpNodes": 0}}, "/policyConfig/maxScaleUpNodes", "minimum"),
    ({"policyConfig": {"predictive": {"quantile": 1.0}}}, "/policyConfig/predictive/quantile",
     "exclusiveMaximum"),
    ({"policyConfig": {"predictive": {"leadTimeFactor": 21}}},
     "/policyConfig/predictive/leadTimeFactor", "maximum"),
    ({"policyConfig": {"fairShareWeights": {"team-a": 0}}},
     "/policyConfig/fairShareWeights/team-a", "exclusiveMinimum"),
    ({"policyConfig": {"staticNodes": {"a100": 1.5}}}, "/policyConfig/staticNodes/a100",
     "want integer"),
    ({"nodePools": [{**POOL, "provider": "openstack"}]}, "/nodePools/0/provider", "one of"),
    ({"nodePools": [{k: v for k, v in POOL.items() if k != "maxNodes"}]}, "/nodePools/0",
     "missing property 'maxNodes'"),
    ({"nodePools": [{**POOL, "gpusPerNode": 17}]}, "/nodePools/0/gpusPerNode", "maximum"),
    ({"nodePools": [{**POOL, "pricePerHour": -1}]}, "/nodePools/0/pricePerHour", "minimum"),
    ({"nodePools": [{**POOL, "gpuType": "A100"}]}, "/nodePools/0/gpuType", "pattern"),
    ({"nodePools": [{**POOL, "name": "GPU_pool"}]}, "/nodePools/0/name", "pattern"),
    ({"nodePools": [{**POOL, "gpusPerNod": 8}]}, "/nodePools/0",
     "additional properties 'gpusPerNod' not allowed"),
    ({"nodePools": [{**POOL, "taints": ["gpu:Sometimes"]}]}, "/nodePools/0/taints/0", "pattern"),
    ({"nodePools": [{**POOL, "aws": {"clusterName": "c"}}]}, "/nodePools/0/provider",
     "value must be 'aws'"),
    ({"metrics": {"prometheusRule": {"pendingGpusFor": "half an hour"}}},
     "/metrics/prometheusRule/pendingGpusFor", "pattern"),
    ({"metrics": {"port": 70000}}, "/metrics/port", "maximum"),
    ({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory", ""),
]  # fmt: skip


@pytest.mark.parametrize(("values", "path", "says"), INVALID, ids=[c[1] or c[2] for c in INVALID])
def test_invalid_values_are_rejected_naming_the_field(
    tmp_path: Path, values: dict[str, Any], path: str, says: str
) -> None:
    error = helm_error(tmp_path, values)
    assert "values don't meet the specifications of the schema" in error, error or "rendered"
    assert f"at '{path}'" in error, error
    assert says in error, error


def test_valid_values_render(tmp_path: Path) -> None:
    values = {
        "policyConfig": {"policy": "predictive", "predictive": {"quantile": 0.99}},
        "nodePools": [
            POOL,
            {**POOL, "name": "h100", "gpuType": "h100", "minNodes": 1, "taints": ["g=x:NoSchedule"],
             "labels": {"dlscaler.io/gpu-type": "h100"}, "kwok": {"availableNodes": 2}},
        ],
        "resources": {"limits": {"memory": "2Gi", "cpu": 2}},
        "metrics": {"prometheusRule": {"pendingGpusFor": "1h30m"}},
    }  # fmt: skip
    assert helm_error(tmp_path, values) == ""


# Boundary cases of the policy mapping: helm (the schema) and parse_policy_config (the
# controller) must agree on each.
POLICY_CASES = [
    {},
    {"policy": "static-peak", "staticNodes": {"a": 0}},
    {"idleTimeoutSeconds": 0},
    {"idleTimeoutSeconds": -0.5},
    {"decisionIntervalSeconds": 0},
    {"decisionIntervalSeconds": 0.5},
    {"maxScaleUpNodes": 1},
    {"maxScaleUpNodes": 0},
    {"fairShareWeights": {"q": 0.01}},
    {"fairShareWeights": {"q": -1}},
    {"poolPriorities": {"a": -5}},
    {"poolPriorities": {"a": "high"}},
    {"predictive": {"quantile": 0.0001}},
    {"predictive": {"quantile": 0}},
    {"predictive": {"leadTimeFactor": 0}},
    {"predictive": {"leadTimeFactor": 20}},
    {"predictive": {"leadTimeFactor": 20.5}},
    {"predictive": {"headroomGpus": -1}},
    {"predictive": {"scaleDownQuantile": 0.999}},
    {"predictive": {"scaleDownQuantile": 1}},
    {"predictive": {"maxErrorRatio": 0}},
    {"predictive": {"hysteresisNodes": 0}},
    {"predictive": {"hysteresisNodes": -1}},
    {"predictive": {"hysteresisNodes": 0.5}},
    {"predictive": {"arrivalQuantile": 0}},
    {"predictive": {"arrivalQuantile": 1.0}},
    {"predictive": {"arrivalQuantile": -0.1}},
    {"predictive": {"arrivalBudget": 0}},
    {"predictive": {"arrivalBudget": 1.5}},
    {"predictive": {"horizon": 3}},
]


@pytest.mark.parametrize("policy", POLICY_CASES, ids=[str(c) for c in POLICY_CASES])
def test_schema_and_parser_agree_on_policy_values(tmp_path: Path, policy: dict[str, Any]) -> None:
    try:
        parse_policy_config(policy)
        parser_accepts = True
    except ConfigError:
        parser_accepts = False
    error = helm_error(tmp_path, {"policyConfig": policy})
    assert (error == "") == parser_accepts, f"parser accepts: {parser_accepts}; helm: {error}"


def test_oracle_is_the_one_policy_the_parser_accepts_and_the_chart_refuses() -> None:
    """oracle needs every job's runtime in advance: simulator only."""
    assert parse_policy_config({"policy": "oracle"}).policy == "oracle"
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    enum = schema["definitions"]["policyConfig"]["properties"]["policy"]["enum"]
    assert set(POLICY_NAMES) - set(enum) == {"oracle"}
    assert set(enum) <= set(POLICY_NAMES)


def test_defaults_in_values_yaml_pass_the_schema_unchanged(tmp_path: Path) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert helm_error(tmp_path, copy.deepcopy(values)) == ""
