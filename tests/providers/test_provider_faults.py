"""200 randomised scale operations per provider through 20% throttling and 5% 5xx.

Every operation must end with the cloud exactly where it was asked to be: the requested
target, the named nodes gone and no others, no instance created twice. The cloud's state is
read directly from the backend (moto, the fakes' memory), not through the adapter under test.
Retries must stay bounded: no operation gives up, and the number of requests per operation
stays small (a retry loop would show here). Backoff sleeps are injected no-ops, so the test
measures calls, not waiting.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from prov_aws import aws_truth
from prov_azure import azure_truth
from prov_fake_harness import fake_truth
from prov_gcp import gcp_truth

from dlscaler.pool import InstanceState, NodePoolProvider
from providers.fake import FaultRates
from providers.retry import Retrier, RetryPolicy, no_sleep

OPERATIONS = 200
MAX_ATTEMPTS = 8
"""With a 25% chance of a failed request, 8 attempts leave a 1.5e-5 chance that one call
gives up; the seeds are fixed, so a run is repeatable either way."""
RATES = FaultRates(throttle=0.20, server_error=0.025, lost_response=0.025)
"""5% of answers are 5xx: half before the cloud acted, half after (the reply was lost)."""

TRUTH: dict[str, Callable[[Any, NodePoolProvider], tuple[int, list[str]]]] = {
    "fake": fake_truth,
    "aws": aws_truth,
    "gcp": gcp_truth,
    "azure": azure_truth,
}


def _faulty(backend: str, harness: Any) -> Callable[[], dict[str, int]]:
    """Turn the fault rates on; return a reader of (requests, faults) counted so far."""
    if backend == "fake":
        harness.cloud.rates = RATES
        return lambda: {
            "requests": sum(harness.cloud.calls.values()),
            "faults": sum(harness.cloud.faults.values()),
        }
    harness.cloud.faults.set_rates(RATES, seed=20240)
    return lambda: {
        "requests": sum(harness.cloud.faults.requests.values()),
        "faults": sum(harness.cloud.faults.faults.values()),
    }


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(TRUTH))
def test_random_operations_under_faults_end_at_requested_sizes(
    backend: str, request: pytest.FixtureRequest
) -> None:
    harness = request.getfixturevalue(f"{backend}_harness")
    truth = TRUTH[backend]
    retrier = Retrier(
        RetryPolicy(max_attempts=MAX_ATTEMPTS, base_delay_s=0.5, max_delay_s=20.0),
        sleep=no_sleep,
        rng=random.Random(3),
    )
    provider = harness.group(target=2, retrier=retrier)
    counts = _faulty(backend, harness)
    rng = random.Random(f"{backend}-soak")
    low, high = harness.pool.min_nodes, harness.pool.max_nodes
    ever_seen: set[str] = set(truth(harness, provider)[1])
    per_op_requests: list[int] = []
    start = counts()

    for step in range(OPERATIONS):
        before_target, before = truth(harness, provider)
        requests_before = counts()["requests"]
        roll = rng.random()
        if roll < 0.5:
            size = rng.randint(low, high)
            provider.set_target_size(size)
            harness.settle(provider)
            target, after = truth(harness, provider)
            assert target == size == len(after), (step, size, target, after)
            if size >= before_target:
                assert set(before) <= set(after), (step, "an instance was lost on scale-up")
            else:
                assert set(after) <= set(before), (step, "scale-down created an instance")
        elif roll < 0.9 and before:
            doomed = rng.sample(before, k=rng.randint(1, min(3, len(before))))
            provider.delete_instances(doomed)
            harness.settle(provider)
            target, after = truth(harness, provider)
            assert sorted(after) == sorted(set(before) - set(doomed)), (step, doomed, after)
            assert target == before_target - len(doomed), (step, target, before_target)
        else:
            desc = provider.describe()
            live = [i.provider_id for i in desc.instances if i.state is not InstanceState.DELETING]
            assert desc.target_size == before_target and sorted(live) == before, (step, desc)
        new = set(truth(harness, provider)[1]) - set(before)
        # A provider id never comes back: a second create under an old name would be a
        # duplicate, and one we already saw deleted would be a ghost.
        assert not (new & ever_seen), (step, new & ever_seen)
        ever_seen |= new
        per_op_requests.append(counts()["requests"] - requests_before)

    stats = retrier.stats
    end = counts()
    faults = end["faults"] - start["faults"]
    requests = end["requests"] - start["requests"]
    print(
        f"\n{backend}: {OPERATIONS} ops, {requests} requests, {faults} injected faults, "
        f"{stats.retries} retries {dict(stats.retries_by_kind)}, "
        f"max {max(per_op_requests)} requests in one op"
    )
    assert stats.gave_up == 0
    assert faults > 0.15 * requests, "the fault layer was not in the path"
    assert stats.retries >= faults * 0.9, "every injected fault must be seen and retried"
    assert stats.retries <= stats.attempts, "retries are bounded by attempts"
    # No call loop: an operation is a handful of calls plus about one retry per four.
    assert max(per_op_requests) <= 40, per_op_requests
    assert requests / OPERATIONS <= 12
