"""Gang placement: all workers or none, best fit, and gang shapes that conserve GPUs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlscaler.model import split_into_workers
from dlscaler.placement import nodes_needed, place_workers


def test_best_fit_takes_the_fullest_node_that_still_holds_a_worker() -> None:
    # Free GPUs 8, 3, 4: a 3-GPU worker goes to the node with exactly 3 free (index 1),
    # the next to the one with 4 (index 2), the third to the empty node (index 0).
    assert place_workers([8, 3, 4], 3, 3) == [1, 2, 0]


def test_workers_of_one_gang_may_share_a_node() -> None:
    assert place_workers([8], 2, 4) == [0, 0]


def test_a_gang_that_does_not_fit_whole_is_not_placed_at_all() -> None:
    # 3 workers of 4 GPUs: nodes with 7 and 1 free hold one; 4, 4 and 3 free hold two.
    assert place_workers([7, 1], 3, 4) is None
    assert place_workers([4, 4, 3], 3, 4) is None


def test_zero_gpu_workers_need_no_node() -> None:
    assert place_workers([], 3, 0) == []
    assert nodes_needed(3, 0, 8) == 0


def test_nodes_needed_packs_workers_per_node() -> None:
    assert nodes_needed(4, 8, 8) == 4  # one 8-GPU worker per 8-GPU node
    assert nodes_needed(3, 4, 8) == 2  # two 4-GPU workers per node: ceil(3 / 2)
    assert nodes_needed(5, 3, 8) == 3  # two 3-GPU workers per node (2 GPUs wasted each)
    with pytest.raises(ValueError, match="does not fit a 8-GPU node"):
        nodes_needed(1, 16, 8)


@pytest.mark.parametrize(
    ("gpus", "per_node", "shape"),
    [(1, 8, (1, 1)), (8, 8, (1, 8)), (12, 8, (2, 6)), (16, 8, (2, 8)), (7, 4, (7, 1))],
)
def test_split_into_workers_takes_the_fewest_equal_workers(
    gpus: int, per_node: int, shape: tuple[int, int]
) -> None:
    # 7 GPUs on 4-GPU nodes: 2 workers cannot split 7 equally, nor can 3..6; 7 x 1 can.
    assert split_into_workers(gpus, per_node) == shape


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 256), st.integers(1, 16))
def test_split_into_workers_conserves_gpus_and_fits_a_node(gpus: int, per_node: int) -> None:
    workers, per_worker = split_into_workers(gpus, per_node)
    assert workers * per_worker == gpus
    assert 1 <= per_worker <= per_node


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 8), max_size=8),
    st.integers(1, 6),
    st.integers(1, 8),
)
def test_never_a_partial_gang(free: list[int], workers: int, per_worker: int) -> None:
    chosen = place_workers(free, workers, per_worker)
    # The gang fits iff the nodes have room for `workers` workers in total.
    room = sum(f // per_worker for f in free)
    if chosen is None:
        assert room < workers
        return
    assert len(chosen) == workers
    left = list(free)
    for i in chosen:
        left[i] -= per_worker
    assert min(left, default=0) >= 0
