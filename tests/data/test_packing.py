"""Sequence packing: first-fit decreasing against exhaustive search, the packing arrays, the collate wrapper."""

import itertools

import numpy as np
import pytest

from jaxspeech.data.packing import PackedCollate, first_fit_decreasing, packing_padding, plan_packing


def _optimal_rows(lengths, capacity):
    """The fewest rows that hold ``lengths``, by trying every assignment (tiny inputs only)."""
    best = len(lengths)
    for assignment in itertools.product(range(len(lengths)), repeat=len(lengths)):
        if assignment[0] != 0 or max(assignment) + 1 >= best:
            continue
        filled = np.bincount(assignment, weights=lengths, minlength=max(assignment) + 1)
        if np.all(filled <= capacity):
            best = max(assignment) + 1
    return best


def _check_placement(lengths, capacity, row, offset):
    """Every row inside its packed row, none overlapping."""
    spans = {}
    for i, length in enumerate(lengths):
        if length == 0:
            assert row[i] == -1
            continue
        assert 0 <= offset[i] and offset[i] + length <= capacity
        spans.setdefault(row[i], []).append((offset[i], offset[i] + length))
    for intervals in spans.values():
        intervals.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(intervals))


def test_first_fit_decreasing_is_within_its_proven_bound_of_the_optimum():
    """FFD <= 11/9 OPT + 6/9 (Dosa 2007), on random instances solved exhaustively."""
    rng = np.random.default_rng(0)
    worse = 0
    for _ in range(40):
        lengths = rng.integers(1, 60, 6)
        row, offset, used = first_fit_decreasing(lengths, 64)
        _check_placement(lengths, 64, row, offset)
        optimal = _optimal_rows(lengths, 64)
        assert optimal <= used <= 11 / 9 * optimal + 6 / 9
        worse += used > optimal
    assert worse < 10


def test_longest_rows_go_first_and_short_rows_fill_the_gaps():
    # First fit in the given order takes 4 rows (10 10 30 | 30 | 50 | 50); longest first, the 10s fill the
    # gaps beside the 50s and the 30s share a row.
    row, offset, used = first_fit_decreasing(np.array([10, 10, 30, 0, 30, 50, 50]), 64)
    assert used == 3
    np.testing.assert_array_equal(row, [0, 1, 2, -1, 2, 0, 1])
    np.testing.assert_array_equal(offset, [50, 50, 0, 0, 30, 0, 0])
    with pytest.raises(ValueError, match="does not fit packed rows of 64"):
        first_fit_decreasing(np.array([10, 65]), 64)


def test_plan_marks_each_position_with_its_owner_and_rounds_the_rows():
    lengths = np.array([5, 3, 0, 4])
    plan = plan_packing(lengths, 8, row_multiple=4)
    assert plan["pack_owner"].shape == (4, 8)  # 2 rows used, rounded up to 4
    for i, length in enumerate(lengths):
        where = np.argwhere(plan["pack_owner"] == i)
        assert len(where) == length
        if length:
            assert set(where[:, 0]) == {plan["pack_row"][i]}
            np.testing.assert_array_equal(where[:, 1], plan["pack_offset"][i] + np.arange(length))
    assert plan_packing(np.zeros(3, int), 8)["pack_owner"].shape == (1, 8)  # an empty batch keeps one row
    report = packing_padding(plan, lengths, 8)
    assert report == {"padding_unpacked": 1 - 12 / 32, "padding_packed": 1 - 12 / 32}
    assert packing_padding(plan_packing(lengths, 8), lengths, 8)["padding_packed"] == 1 - 12 / 16


def test_packed_collate_adds_the_plan_to_every_batch():
    def collate(dataset, rows, frames, label_len):
        return {"lengths": np.asarray(dataset)[rows]}

    packed = PackedCollate(collate, lambda batch: (batch["lengths"], 10), row_multiple=1)
    batch = packed([7, 3, 6, 4, 9], np.array([0, 1, 2, 3]), 0, 0)
    np.testing.assert_array_equal(batch["lengths"], [7, 3, 6, 4])
    assert batch["pack_owner"].shape == (2, 10)  # 7 + 3 and 6 + 4
