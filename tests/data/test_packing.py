"""Sequence packing: next fit, the packing arrays, and epoch plans that fill their packed rows."""

import numpy as np
import pytest

from jaxspeech.data.bucketing import PAD_ROW, Buckets
from jaxspeech.data.packing import PackedPlanner, next_fit, plan_packing


def test_next_fit_places_rows_in_order_and_skips_empty_ones():
    row, offset, used = next_fit(np.array([10, 50, 0, 20, 30]), 64)
    np.testing.assert_array_equal(row, [0, 0, -1, 1, 1])
    np.testing.assert_array_equal(offset, [0, 10, 0, 0, 20])
    assert used == 2
    with pytest.raises(ValueError, match="does not fit packed rows of 64"):
        next_fit(np.array([10, 65]), 64)


def test_plan_marks_each_position_with_its_owner_and_keeps_the_row_count():
    lengths = np.array([5, 3, 0, 4])
    plan = plan_packing(lengths, 8, min_rows=3, row_multiple=2)
    assert plan["pack_owner"].shape == (4, 8)  # 2 rows used, at least 3, a multiple of 2
    for i, length in enumerate(lengths):
        where = np.argwhere(plan["pack_owner"] == i)
        assert len(where) == length
        if length:
            assert set(where[:, 0]) == {plan["pack_row"][i]}
            np.testing.assert_array_equal(where[:, 1], plan["pack_offset"][i] + np.arange(length))
    assert plan_packing(np.zeros(3, int), 8)["pack_owner"].shape == (1, 8)  # an empty batch keeps one row


def _speech_like(seed=0, n=600):
    """UniVoice-like rows of n examples with frames f: a TTS row (f + text) and an ASR row (f / 8 + text),
    in two buckets by frames (both rows of an example share one). Returns tokens [2n], bucket ids [2n]."""
    rng = np.random.default_rng(seed)
    frames, text = rng.integers(100, 400, n), rng.integers(20, 40, n)
    tokens = np.concatenate([frames + text, frames // 8 + text])
    return tokens, np.tile((frames > 250).astype(int), 2)


@pytest.mark.parametrize("fill", [0.9, 0.95])
def test_epoch_plans_fill_their_packed_rows_and_place_every_example_once(fill):
    tokens, bucket_ids = _speech_like()
    buckets, lengths = Buckets((256, 400), (16, 10)), (296, 440)
    planner = PackedPlanner(tokens, bucket_ids, buckets, lengths, fill=fill)
    plans = [planner.plan(seed=0, epoch=e) for e in range(3)]
    for plan in plans:
        assert len(plan) == planner.batches_per_epoch
        placed = np.concatenate([rows[rows != PAD_ROW] for _, rows in plan])
        np.testing.assert_array_equal(np.sort(placed), np.arange(len(tokens)))  # every example, once
        for k, rows in plan:
            assert len(rows) == buckets.sizes[k] and np.all(bucket_ids[rows[rows >= 0]] == k)
        assert planner.padding(plan) < 1 - fill + 0.05  # the fill's slack and some fragmentation
        assert planner.grown(plan) <= 0.05 * len(plan)
    assert {tuple(r) for _, r in plans[0]} != {tuple(r) for _, r in plans[1]}  # epochs differ
    again = planner.plan(seed=0, epoch=1)
    assert all(k == j and np.array_equal(r, s) for (k, r), (j, s) in zip(again, plans[1], strict=True))


def test_next_fit_over_a_planned_batch_needs_at_most_the_planned_rows():
    """Each batch lists its rows packed row by packed row: next fit reproduces the plan."""
    tokens, bucket_ids = _speech_like(seed=1)
    planner = PackedPlanner(tokens, bucket_ids, Buckets((256, 400), (16, 10)), (296, 440), fill=0.95)
    plan = planner.plan(seed=3, epoch=0)
    for k, rows in plan:
        used = next_fit(tokens[rows[rows >= 0]], planner.lengths[k])[2]
        assert used <= planner.rows[k] or planner.grown([(k, rows)]) == 1


def test_bad_settings():
    with pytest.raises(ValueError, match="exceeds its packed rows"):
        PackedPlanner(np.array([10, 40]), np.zeros(2, int), Buckets((32,), (4,)), (32,))
