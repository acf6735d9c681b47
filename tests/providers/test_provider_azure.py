"""Azure specifics: provider ids as cloud-provider-azure writes them, long-running operation
polling over TLS, the exact role actions named, Retry-After, and a failed allocation."""

from __future__ import annotations

import logging

import pytest
from prov_azure import RESOURCE_GROUP, SUBSCRIPTION, AzureCloud, AzureHarness
from prov_harness import (
    contract_pool,
    failed_scale_up,
    refused_permission,
    test_retrier,
    unique_name,
)

from dlscaler.pool import InstanceState, InvalidConfigError, PermissionDeniedError
from providers.contract import Target


def test_provider_ids_match_what_aks_nodes_carry(azure_harness: AzureHarness) -> None:
    p = azure_harness.group(target=4)  # more than one page of three
    ids = sorted(i.provider_id for i in p.describe().instances)
    prefix = (
        f"azure:///subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP.lower()}"
        f"/providers/Microsoft.Compute/virtualMachineScaleSets/{p.group_id}/virtualMachines/"
    )
    assert ids == sorted(prefix + str(n) for n in range(4))
    # A node's providerID may spell the resource group either way.
    p.delete_instances([ids[0].replace(RESOURCE_GROUP.lower(), RESOURCE_GROUP)])
    azure_harness.settle(p)
    assert sorted(i.provider_id for i in p.describe().instances) == ids[1:]


def test_a_vm_of_another_scale_set_is_refused(azure_harness: AzureHarness) -> None:
    p = azure_harness.group(target=1)
    other = p.describe().instances[0].provider_id.replace(p.group_id, "other-vmss")
    with pytest.raises(InvalidConfigError, match="not a VM of scale set"):
        p.delete_instances([other])


def test_updates_poll_the_async_operation_until_it_succeeds(azure_harness: AzureHarness) -> None:
    faults = azure_harness.cloud.faults
    polls = faults.requests["poll"]
    p = azure_harness.group()
    p.set_target_size(2)
    assert faults.requests["poll"] >= polls + 2, "the InProgress answer must be polled past"
    assert {i.state for i in p.describe().instances} == {InstanceState.PENDING}
    azure_harness.settle(p)
    assert {i.state for i in p.describe().instances} == {InstanceState.RUNNING}


def test_a_failed_status_poll_resumes_polling_instead_of_resending(
    azure_harness: AzureHarness,
) -> None:
    faults = azure_harness.cloud.faults
    p = azure_harness.group()
    patches, failed = faults.requests["scale"], faults.faults["server_error"]
    faults.inject("server_error", "poll")
    p.set_target_size(2)
    assert faults.faults["server_error"] == failed + 1
    # Polling resumed from the poller's continuation token: the PATCH went out once.
    assert faults.requests["scale"] == patches + 1
    assert p.describe().target_size == 2


@pytest.mark.parametrize(
    ("target", "action"),
    [
        ("read", "Microsoft.Compute/virtualMachineScaleSets/read"),
        ("scale", "Microsoft.Compute/virtualMachineScaleSets/write"),
        ("delete", "Microsoft.Compute/virtualMachineScaleSets/delete/action"),
    ],
)
def test_permission_errors_name_the_role_action(
    azure_harness: AzureHarness, target: Target, action: str
) -> None:
    assert refused_permission(azure_harness, target) == action


def test_throttling_waits_at_least_retry_after(azure_harness: AzureHarness) -> None:
    p = azure_harness.group()
    stats = azure_harness.stats(p)
    azure_harness.inject("throttle", "read")
    p.describe()
    assert stats.retries_by_kind["throttled"] == 1 and stats.slept_s >= 1.0


def test_failed_allocation_removes_the_failed_vms(azure_harness: AzureHarness) -> None:
    p, err = failed_scale_up(azure_harness, "stockout", start=1, to=3)
    assert err.code == "AllocationFailed"
    assert "2 VMs that could not be allocated were removed" in err.message
    azure_harness.settle(p)
    d = p.describe()
    assert d.target_size == 1 and [i.state for i in d.instances] == [InstanceState.RUNNING]


def test_cores_quota_is_quota_error(azure_harness: AzureHarness) -> None:
    p, err = failed_scale_up(azure_harness, "quota", start=0, to=2)
    assert "Cores quota" in str(err)
    assert p.describe().target_size == 0


def test_template_uses_the_scale_set_sku_and_marks_spot(azure_cloud: AzureCloud) -> None:
    name = unique_name("vmss-spot")
    azure_cloud.fake.create(name, priority="Spot")
    pool = contract_pool(
        "azure",
        groupId=name,
        spot=True,
        instanceType="",
        azure={"subscriptionId": SUBSCRIPTION, "resourceGroup": RESOURCE_GROUP},
    )
    t = azure_cloud.provider(pool, retrier=test_retrier()).node_template()
    assert t.instance_type == "Standard_ND96asr_v4"
    assert t.labels["kubernetes.azure.com/scalesetpriority"] == "spot"
    assert "kubernetes.azure.com/scalesetpriority=spot:NoSchedule" in t.taints
    assert t.labels["dlscaler.io/capacity-type"] == "spot"


def test_no_token_reaches_the_logs(
    azure_harness: AzureHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    p = azure_harness.group(target=1)
    azure_harness.inject("throttle", "read")
    azure_harness.inject("permission", "scale")
    with pytest.raises(PermissionDeniedError) as err:
        p.set_target_size(2)
    assert caplog.records, "retries are logged (kind and code)"
    assert "loopback-test-token" not in caplog.text
    assert "loopback-test-token" not in str(err.value)
