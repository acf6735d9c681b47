"""The pools file and policy config loaders: errors name the file, the pool index and the
field; valid input becomes frozen specs with the documented defaults."""

from __future__ import annotations

from typing import Any

import pytest

from dlscaler.config import (
    DEFAULT_POOL,
    ConfigError,
    PolicyConfig,
    parse_policy_config,
    parse_pools,
    policy_config_to_dict,
)


def good(name: str = "a100", **fields: Any) -> dict[str, Any]:
    return {"name": name, "gpusPerNode": 8, "maxNodes": 4, "pricePerHour": 32.0, **fields}


def error_of(data: Any) -> str:
    with pytest.raises(ConfigError) as err:
        parse_pools(data, source="pools.yaml")
    return str(err.value)


def test_valid_pools_become_specs_with_defaults() -> None:
    models = parse_pools(
        {"pools": [good(), good("t4", gpusPerNode=4, gpuType="t4", spot=True, minNodes=1)]},
        source="pools.yaml",
    )
    a100, t4 = (m.to_spec() for m in models)
    assert (a100.name, a100.gpus_per_node, a100.max_nodes, a100.min_nodes) == ("a100", 8, 4, 0)
    assert a100.provisioning_delay_s == 300.0 and a100.idle_timeout_s is None
    assert a100.usd_per_gpu_hour == 4.0  # 32 USD / 8 GPUs
    assert (t4.gpu_type, t4.spot, t4.min_nodes) == ("t4", True, 1)


def test_a_bare_list_and_nodepool_manifests_are_accepted() -> None:
    spec = good()
    del spec["name"]  # a manifest's name is in its metadata
    manifest = {"kind": "NodePool", "metadata": {"name": "np"}, "spec": spec}
    assert [m.name for m in parse_pools([good()])] == ["a100"]
    assert [m.name for m in parse_pools(manifest)] == ["np"]


def test_the_default_pool_is_the_documented_one() -> None:
    spec = DEFAULT_POOL.to_spec()
    assert (spec.gpus_per_node, spec.min_nodes, spec.max_nodes) == (8, 0, 10_000)
    # Its idle timeout is the policy's (600 s by default), so tuning the policy applies.
    assert (spec.provisioning_delay_s, spec.idle_timeout_s) == (300.0, None)
    assert PolicyConfig().idle_timeout_s == 600.0
    assert spec.price_usd_per_hour == 32.77 and spec.gpu_type == ""


@pytest.mark.parametrize(
    ("pool", "field", "says"),
    [
        ({"name": "a", "maxNodes": 2, "pricePerHour": 1}, "gpusPerNode", "Field required"),
        (good(provider="ibm"), "provider", "got 'ibm'"),
        (good(maxNode=3), "maxNode", "unknown field (check the spelling)"),
        (good(gpuType="A100"), "gpuType", "should match pattern"),
        (good(gpusPerNode="eight"), "gpusPerNode", "valid integer"),
        (good(gpusPerNode=0), "gpusPerNode", "greater than or equal to 1"),
        (good(pricePerHour=-1), "pricePerHour", "greater than or equal to 0"),
        (good(name="Bad Name"), "name", "should match pattern"),
        (good(provisioningDelaySeconds=-5), "provisioningDelaySeconds", "greater than or equal"),
        (good(simulation={"bootFailureRate": 1.5}), "simulation.bootFailureRate", "less than 1"),
        (good(simulation={"delayDistribution": "gamma"}), "simulation.delayDistribution", "gamma"),
    ],
)
def test_field_error_names_file_pool_index_and_field(
    pool: dict[str, Any], field: str, says: str
) -> None:
    message = error_of({"pools": [good("ok"), pool]})
    assert message.startswith(f"pools.yaml: pools[1]: {field}: ")
    assert says in message


def test_min_above_max_names_both_fields() -> None:
    message = error_of([good(minNodes=5, maxNodes=2)])
    assert message.startswith("pools.yaml: pools[0]: ")
    assert "minNodes (5) must be <= maxNodes (2)" in message


def test_every_bad_pool_is_reported_at_once() -> None:
    message = error_of([good(provider="ibm"), good("b"), good("c", pricePerHour=-1)])
    assert "pools[0]: provider" in message
    assert "pools[2]: pricePerHour" in message
    assert "pools[1]" not in message


def test_nodepool_manifest_error_names_the_manifest() -> None:
    manifest = {"kind": "NodePool", "metadata": {"name": "np"}, "spec": {"maxNodes": 1}}
    message = error_of([manifest])
    assert message.startswith("pools.yaml: pools[0](NodePool np): ")
    assert "gpusPerNode" in message


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("hello", "expected a list of pools (or a mapping with a 'pools' list), got str"),
        (None, "got NoneType"),
        ({"pools": 3}, "got int"),
        ([3], "pools[0]: expected a mapping, got int"),
        ([], "no pools defined"),
        ([good(), good()], "pool name 'a100' is used more than once"),
    ],
)
def test_malformed_pools_document_is_rejected(data: Any, says: str) -> None:
    message = error_of(data)
    assert message.startswith("pools.yaml: ")
    assert says in message


def test_policy_config_defaults_are_documented_values() -> None:
    cfg = parse_policy_config(None)
    assert cfg == PolicyConfig()
    assert (cfg.policy, cfg.idle_timeout_s, cfg.queue_ordering, cfg.expander) == (
        "reactive",
        600.0,
        "fifo",
        "cheapest",
    )


def test_policy_config_round_trips_and_accepts_a_helm_wrapper() -> None:
    cfg = parse_policy_config(
        {
            "dlscaler": {
                "policy": "predictive",
                "queueOrdering": "fair-share",
                "fairShareWeights": {"prod": 3},
                "predictive": {"quantile": 0.8},
            }
        }
    )
    assert cfg.fair_share_weights == {"prod": 3.0}
    assert cfg.predictive.quantile == 0.8
    assert parse_policy_config(policy_config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"policy": "magic"}, "c.yaml: policy: "),
        ({"queueOrdering": "lifo"}, "c.yaml: queueOrdering: "),
        ({"expander": "random"}, "c.yaml: expander: "),
        ({"fairShareWeights": {"prod": 0}}, "fairShareWeights.prod must be > 0"),
        ({"predictive": {"quantile": 2}}, "c.yaml: predictive.quantile: "),
        ({"idleTimeout": 5}, "c.yaml: idleTimeout: unknown field"),
    ],
)
def test_policy_config_errors_name_source_and_field(data: Any, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_policy_config(data, source="c.yaml")
    assert says in str(err.value)
