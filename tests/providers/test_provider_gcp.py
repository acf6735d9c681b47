"""GCP specifics: provider ids across a region's zones, paging, operation waits, the exact
permissions named, and a stockout read from the managed instances' last attempt."""

from __future__ import annotations

import pytest
from prov_gcp import PROJECT, REGION, ZONE, GcpCloud, GcpHarness
from prov_harness import (
    contract_pool,
    failed_scale_up,
    refused_permission,
    test_retrier,
    unique_name,
)

from dlscaler.pool import CapacityError, InstanceState
from providers.contract import Target


def test_regional_group_spreads_over_zones_with_gce_provider_ids(
    gcp_regional_harness: GcpHarness,
) -> None:
    p = gcp_regional_harness.group(target=5)  # more than one page of three
    ids = sorted(i.provider_id for i in p.describe().instances)
    assert len(ids) == 5
    zones = {pid.split("/")[3] for pid in ids}
    assert zones == {f"{REGION}-a", f"{REGION}-b", f"{REGION}-c"}
    assert all(pid.startswith(f"gce://{PROJECT}/{REGION}-") for pid in ids)
    p.delete_instances(ids[1:3])
    gcp_regional_harness.settle(p)
    assert sorted(i.provider_id for i in p.describe().instances) == [ids[0], *ids[3:]]


def test_operations_are_waited_on_until_done(gcp_harness: GcpHarness) -> None:
    faults = gcp_harness.cloud.faults
    polls = faults.requests["poll"]
    p = gcp_harness.group()
    p.set_target_size(2)
    # The fake answers RUNNING once before DONE: the adapter must have waited.
    assert faults.requests["poll"] >= polls + 2
    assert p.describe().target_size == 2


def test_new_instances_are_pending_until_they_run(gcp_harness: GcpHarness) -> None:
    p = gcp_harness.group()
    p.set_target_size(2)
    assert {i.state for i in p.describe().instances} == {InstanceState.PENDING}
    gcp_harness.settle(p)
    assert {i.state for i in p.describe().instances} == {InstanceState.RUNNING}


@pytest.mark.parametrize(
    ("target", "permission"),
    [
        ("read", "compute.instanceGroupManagers.get"),
        ("scale", "compute.instanceGroupManagers.update"),
        ("delete", "compute.instanceGroupManagers.update"),
    ],
)
def test_permission_errors_name_the_iam_permission(
    gcp_harness: GcpHarness, target: Target, permission: str
) -> None:
    assert refused_permission(gcp_harness, target) == permission


def test_stockout_removes_the_instances_that_could_not_be_created(gcp_harness: GcpHarness) -> None:
    p, err = failed_scale_up(gcp_harness, "stockout", start=1, to=3)
    assert err.code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert "2 of 2 new instances could not be created" in err.message
    gcp_harness.settle(p)
    d = p.describe()
    assert d.target_size == 1 and len(d.instances) == 1 and d.scale_up_error is None


def test_quota_shows_as_quota_error(gcp_harness: GcpHarness) -> None:
    _, err = failed_scale_up(gcp_harness, "quota", start=0, to=1)
    assert "NVIDIA_A100_GPUS" in str(err)


def test_describe_reports_instances_stuck_on_a_stockout(gcp_cloud: GcpCloud) -> None:
    """A MIG keeps retrying a create that stocks out; describe shows why it is behind."""
    name = unique_name("mig-behind")
    gcp_cloud.fake.create(name, target=1)
    with gcp_cloud.fake._lock:
        mig = next(m for m in gcp_cloud.fake.migs.values() if m.name == name)
        gcp_cloud.fake._grow(mig, 1, fault="stockout")
    pool = contract_pool("gcp", zone=ZONE, region=REGION, groupId=name, gcp={"project": PROJECT})
    desc = gcp_cloud.provider(pool, retrier=test_retrier()).describe()
    assert desc.target_size == 2
    stuck = [i for i in desc.instances if i.error]
    assert len(stuck) == 1 and stuck[0].state is InstanceState.PENDING
    assert "ZONE_RESOURCE_POOL_EXHAUSTED" in stuck[0].error
    assert isinstance(desc.scale_up_error, CapacityError)


def test_template_comes_from_the_pool_and_marks_spot(gcp_cloud: GcpCloud) -> None:
    name = unique_name("mig-spot")
    gcp_cloud.fake.create(name)
    pool = contract_pool(
        "gcp",
        zone=ZONE,
        region=REGION,
        groupId=name,
        instanceType="a2-highgpu-8g",
        spot=True,
        gcp={"project": PROJECT},
    )
    t = gcp_cloud.provider(pool, retrier=test_retrier()).node_template()
    assert (t.instance_type, t.gpus_per_node, t.gpu_type) == ("a2-highgpu-8g", 8, "a100")
    assert t.labels["cloud.google.com/gke-spot"] == "true"
    assert t.labels["topology.kubernetes.io/zone"] == ZONE
    assert t.labels["dlscaler.io/capacity-type"] == "spot"
