"""Sequence packing: several rows of a batch laid end to end in fewer rows of the same length.

``plan_packing`` places each row's token count by first-fit decreasing (the longest row first, each
into the first packed row with room) and returns the arrays a packed model reads
(``models.univoice.layout.Packing``): ``pack_row`` [B], ``pack_offset`` [B] and ``pack_owner`` [R, P]
(the row each packed position is reserved for, -1 for none). ``PackedCollate`` adds them to every
batch of a collate function. The number of packed rows R varies with the batch; it is rounded up to
``row_multiple`` so that a jitted step sees few distinct shapes (and the rows still divide over
data-parallel devices).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jaxspeech.data.bucketing import round_up


def first_fit_decreasing(lengths: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(row [N], offset [N], rows used) placing ``lengths`` [N] into rows of ``capacity``; rows of length 0
    are not placed (row -1, offset 0). ValueError if a length exceeds the capacity."""
    lengths = np.asarray(lengths, np.int64)
    if np.any(lengths > capacity):
        raise ValueError(f"a row of {int(lengths.max())} tokens does not fit packed rows of {capacity}")
    row, offset = np.full(len(lengths), -1, np.int32), np.zeros(len(lengths), np.int32)
    used: list[int] = []  # tokens already in each packed row
    for i in np.argsort(-lengths, kind="stable"):
        if lengths[i] == 0:
            break
        r = next((r for r, filled in enumerate(used) if filled + lengths[i] <= capacity), len(used))
        if r == len(used):
            used.append(0)
        row[i], offset[i] = r, used[r]
        used[r] += int(lengths[i])
    return row, offset, len(used)


def plan_packing(lengths: np.ndarray, capacity: int, *, row_multiple: int = 1) -> dict[str, np.ndarray]:
    """``pack_row`` [N], ``pack_offset`` [N] and ``pack_owner`` [R, capacity] int32 for rows of ``lengths`` [N]
    tokens, R the packed rows used rounded up to ``row_multiple`` (at least one multiple)."""
    row, offset, used = first_fit_decreasing(lengths, capacity)
    num_rows = max(int(round_up(used, row_multiple)), row_multiple)
    owner = np.full((num_rows, capacity), -1, np.int32)
    for i in np.flatnonzero(row >= 0):
        owner[row[i], offset[i]:offset[i] + int(lengths[i])] = i
    return {"pack_row": row, "pack_offset": offset, "pack_owner": owner}


def packing_padding(batch: dict[str, np.ndarray], lengths: np.ndarray, capacity: int) -> dict[str, float]:
    """The share of padded positions of one batch unpacked ([B, capacity]) and packed (``batch``'s
    ``pack_owner`` [R, capacity]), for rows of ``lengths`` [B] tokens."""
    tokens = float(np.sum(lengths))
    return {"padding_unpacked": 1.0 - tokens / (len(lengths) * capacity),
            "padding_packed": 1.0 - tokens / batch["pack_owner"].size}  # fmt: skip


class PackedCollate:
    """A collate function whose batches carry a packing plan: ``row_tokens(batch)`` gives each row's
    token count [B] and the rows' unpacked length (the packed rows' length)."""

    def __init__(self, collate: Callable, row_tokens: Callable[[dict], tuple[np.ndarray, int]], *,
                 row_multiple: int = 1):
        self.collate, self.row_tokens, self.row_multiple = collate, row_tokens, row_multiple

    def __call__(self, dataset, rows: np.ndarray, frames: int, label_len: int) -> dict[str, np.ndarray]:
        batch = self.collate(dataset, rows, frames, label_len)
        lengths, capacity = self.row_tokens(batch)
        return {**batch, **plan_packing(lengths, capacity, row_multiple=self.row_multiple)}
