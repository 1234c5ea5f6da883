"""Token-budget batch planning and batch assembly (hybridfast.batching)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridfast.batching import batch_cost, pack_batch, pad_batch, plan_batches
from hybridfast.errors import HybridfastError


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 300), min_size=0, max_size=200),
    budget=st.integers(1, 4000),
    max_size=st.one_of(st.none(), st.integers(1, 50)),
    packed=st.booleans(),
)
def test_plan_respects_budget_and_covers_every_text_once(lengths, budget, max_size, packed):
    batches = plan_batches(lengths, budget, max_batch_size=max_size, packed=packed)
    flat = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) >= 1
        if max_size is not None:
            assert len(batch) <= max_size
        cost = batch_cost([lengths[i] for i in batch], packed)
        # Only a text longer than the budget may exceed it, alone in its batch.
        assert cost <= budget or len(batch) == 1
        if not packed:
            real = sum(lengths[i] for i in batch)
            assert cost - real <= 0.2 * cost + 1e-9
    # Longest first: lengths never increase along the plan.
    ordered = [lengths[i] for i in flat]
    assert ordered == sorted(ordered, reverse=True)


def test_padded_plan_counts_padding():
    lengths = [10, 10, 10, 3, 3, 3]
    batches = plan_batches(lengths, 30)
    assert [sorted(b.tolist()) for b in batches] == [[0, 1, 2], [3, 4, 5]]
    # A large budget does not pad short texts to the longest: 3 < 0.8 × 10 starts a new batch.
    assert [sorted(b.tolist()) for b in plan_batches(lengths, 1000)] == [[0, 1, 2], [3, 4, 5]]
    assert len(plan_batches(lengths, 1000, max_padding=0.75)) == 1
    # Packed batches count only real tokens, so more texts fit.
    assert [sorted(b.tolist()) for b in plan_batches(lengths, 39, packed=True)] == [[0, 1, 2, 3, 4, 5]]


def test_plan_is_stable_and_deterministic():
    lengths = [5, 7, 5, 7, 5]
    batches = plan_batches(lengths, 14)
    assert [b.tolist() for b in batches] == [[1, 3], [0, 2], [4]]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_batch_tokens": 0}, {"max_batch_tokens": 8, "max_batch_size": 0}, {"max_batch_tokens": 8, "max_padding": 1.0}],
)
def test_plan_rejects_bad_limits(kwargs):
    with pytest.raises(HybridfastError):
        plan_batches([1, 2], **kwargs)


def test_plan_rejects_empty_texts():
    with pytest.raises(HybridfastError, match="at least one token"):
        plan_batches([3, 0], 10)


def test_pad_and_pack_batch():
    rows = [[5, 6, 7], [8], [9, 10]]
    ids, mask = pad_batch(rows, pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1], [9, 10, 1]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    flat, positions, cu, longest = pack_batch(rows, position_offset=2)
    assert flat.tolist() == [5, 6, 7, 8, 9, 10]
    assert positions.tolist() == [2, 3, 4, 2, 2, 3]
    assert cu.tolist() == [0, 3, 4, 6] and cu.dtype == np.int32
    assert longest == 3
