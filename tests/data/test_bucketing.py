import numpy as np
import pytest

from jaxspeech.data import bucketing


@pytest.fixture
def lengths():
    return np.random.default_rng(0).integers(60, 900, size=500)


def test_buckets_fit_budget_and_row_multiple(lengths):
    b = bucketing.make_buckets(lengths, max_frames=4096, num_buckets=5, length_multiple=16, row_multiple=4)
    assert list(b.lengths) == sorted(b.lengths) and all(t % 16 == 0 for t in b.lengths)
    assert b.lengths[-1] >= lengths.max()
    assert all(s % 4 == 0 and s * t <= 4096 for s, t in zip(b.sizes, b.lengths))
    ids = b.assign(lengths)
    assert np.all(np.asarray(b.lengths)[ids] >= lengths)
    assert np.all(ids == 0) or np.all(np.asarray(b.lengths)[np.maximum(ids - 1, 0)][ids > 0] < lengths[ids > 0])


def test_epoch_plan_covers_every_example_once_and_is_deterministic(lengths):
    b = bucketing.make_buckets(lengths, max_frames=4096, num_buckets=5)
    ids = b.assign(lengths)
    plan = bucketing.plan_epoch(ids, b, seed=3, epoch=1)
    seen = np.concatenate([rows[rows >= 0] for _, rows in plan])
    assert sorted(seen.tolist()) == list(range(len(lengths)))
    assert all(len(rows) == b.sizes[k] for k, rows in plan)
    assert all(np.all(ids[rows[rows >= 0]] == k) for k, rows in plan)
    assert len(plan) == bucketing.batches_per_epoch(ids, b)
    again = bucketing.plan_epoch(ids, b, seed=3, epoch=1)
    assert all(k1 == k2 and np.array_equal(r1, r2) for (k1, r1), (k2, r2) in zip(plan, again))
    other = bucketing.plan_epoch(ids, b, seed=3, epoch=2)
    assert any(not np.array_equal(r1, r2) for (_, r1), (_, r2) in zip(plan, other))


def test_sequential_plan_is_in_index_order(lengths):
    b = bucketing.make_buckets(lengths, max_frames=4096, num_buckets=3)
    plan = bucketing.plan_epoch(b.assign(lengths), b, seed=0, epoch=0, shuffle=False)
    assert [k for k, _ in plan] == sorted(k for k, _ in plan)
    for _, rows in plan:
        real = rows[rows >= 0]
        assert np.all(np.diff(real) > 0)


def test_bucketing_pads_far_less_than_random_batching(lengths):
    b = bucketing.make_buckets(lengths, max_frames=8192, num_buckets=12)
    plan = bucketing.plan_epoch(b.assign(lengths), b, seed=0, epoch=0)
    bucketed = bucketing.padding_fraction(plan, lengths, b)
    random = bucketing.random_batching_padding_fraction(lengths, batch_size=len(lengths) // len(plan))
    assert 0 <= bucketed < 0.5 * random


def test_padding_fraction_exact_on_a_hand_example():
    b = bucketing.Buckets(lengths=(16, 32), sizes=(2, 1))
    lengths = np.array([10, 16, 30])
    plan = [(0, np.array([0, 1])), (1, np.array([2]))]
    assert bucketing.padding_fraction(plan, lengths, b) == pytest.approx(1 - 56 / 64)


def test_too_long_example_is_rejected():
    b = bucketing.Buckets(lengths=(16,), sizes=(1,))
    with pytest.raises(ValueError, match="exceeds the largest bucket"):
        b.assign(np.array([17]))
