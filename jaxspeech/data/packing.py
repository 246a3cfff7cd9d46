"""Sequence packing: the rows of a batch laid end to end in a few packed rows of one length.

A packed model (``models.univoice``) reads three arrays per batch: ``pack_row`` [B] and ``pack_offset``
[B] (where each row sits) and ``pack_owner`` [R, P] (the row each packed position is reserved for,
-1 for none). ``plan_packing`` builds them by next fit over the rows in the order given.

``PackedPlanner`` plans whole epochs so that batches fill their packed rows: per length bucket it
fixes the packed rows per batch (R rows of P tokens, a bucketed batch's tokens at the target ``fill``)
and the batches per epoch n, then each epoch places the bucket's rows, longest first, into the
least-loaded batch that has a free slot and a packed row with room (the tightest such row). Each
batch lists its rows packed row by packed row, so next fit reproduces the plan and never needs more
than R rows; a row that found no room anywhere (the bucket's rows fragment beyond the fill's slack)
goes to the least-loaded batch with a free slot, which then has more packed rows (a rare extra
shape): no row moves to a later batch or is lost.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from jaxspeech.data.bucketing import PAD_ROW, Buckets, round_up


def next_fit(lengths: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(row [N], offset [N], rows used): ``lengths`` [N] placed in order, each in the current packed row
    or, when it has no room, a new one; length-0 rows are not placed (row -1, offset 0)."""
    lengths = np.asarray(lengths, np.int64)
    if np.any(lengths > capacity):
        raise ValueError(f"a row of {int(lengths.max())} tokens does not fit packed rows of {capacity}")
    row, offset = np.full(len(lengths), -1, np.int32), np.zeros(len(lengths), np.int32)
    current, filled = -1, capacity
    for i in np.flatnonzero(lengths > 0):
        if filled + lengths[i] > capacity:
            current, filled = current + 1, 0
        row[i], offset[i] = current, filled
        filled += int(lengths[i])
    return row, offset, current + 1


def plan_packing(lengths: np.ndarray, capacity: int, *, min_rows: int = 1, row_multiple: int = 1
                 ) -> dict[str, np.ndarray]:
    """``pack_row`` [N], ``pack_offset`` [N], ``pack_owner`` [R, capacity] int32 for rows of ``lengths`` [N]
    tokens in the order given (``next_fit``); R: the packed rows used, at least ``min_rows``, rounded up
    to ``row_multiple``."""
    row, offset, used = next_fit(lengths, capacity)
    num_rows = int(round_up(max(used, min_rows, 1), row_multiple))
    owner = np.full((num_rows, capacity), -1, np.int32)
    for i in np.flatnonzero(row >= 0):
        owner[row[i], offset[i]:offset[i] + int(lengths[i])] = i
    return {"pack_row": row, "pack_offset": offset, "pack_owner": owner}


@dataclasses.dataclass(frozen=True)
class PackingSpec:
    """How a batch source packs its rows (``pipeline.SpeechBatches(packing=...)``).

    item_tokens: [N] each example's row length in tokens, from metadata (plans the epochs);
    row_length(frames, label_len): the unpacked row length of a bucket's batches (the packed rows' P);
    batch_tokens(batch): the exact tokens [B] of a collated batch's rows (places them);
    fill: the share of the packed rows an epoch plan aims to fill; length_factor: packed rows about this
    many unpacked rows long (longer rows fragment less; ``PackedPlanner``); row_multiple: packed rows per
    batch are a multiple of it (data-parallel devices).
    """

    item_tokens: np.ndarray
    row_length: Callable[[int, int], int]
    batch_tokens: Callable[[dict], np.ndarray]
    fill: float = 0.95
    length_factor: float = 1.0
    row_multiple: int = 1

    def __post_init__(self):
        if not 0.0 < self.fill <= 1.0:
            raise ValueError(f"packing fill must be in (0, 1], got {self.fill}")
        if self.length_factor < 1.0:
            raise ValueError(f"packing length_factor must be >= 1 (a packed row holds any row), got "
                             f"{self.length_factor}")


def _place(tokens: np.ndarray, slots: int, length: int, rows: int, batches: int, rng: np.random.Generator | None
           ) -> tuple[list[np.ndarray], int]:
    """Places rows of ``tokens`` [M] into ``batches`` batches of ``slots`` slots and ``rows`` packed rows of
    ``length`` (the module docstring's rule; ``rng`` None: ties in index order). Returns each batch's
    row indices, packed row by packed row, and how many rows found no packed row with room."""
    bins = batches * rows
    ties = rng.random(tokens.size) if rng is not None else np.zeros(tokens.size)
    bin_ties = rng.random(bins) if rng is not None else np.arange(bins) / bins
    batch_of_bin = np.arange(bins) // rows
    filled, load, count = np.zeros(bins, np.int64), np.zeros(batches, np.int64), np.zeros(batches, np.int64)
    placed: list[list[tuple[int, int]]] = [[] for _ in range(batches)]  # (packed row, or rows if none; row)
    overflow = 0
    for i in np.lexsort((ties, -tokens)):  # longest first, random among equals
        t = int(tokens[i])
        fits = (filled + t <= length) & (count[batch_of_bin] < slots)
        if fits.any():  # the least-loaded batch, its tightest packed row with room, then at random
            b = int(np.argmin(np.where(fits, load[batch_of_bin] * (length + 1) + length - filled - t + bin_ties,
                                       np.inf)))  # fmt: skip
            batch, where = int(batch_of_bin[b]), b % rows
            filled[b] += t
        else:  # no packed row has room: the batch grows a row
            free = np.flatnonzero(count < slots)
            batch, where = int(free[np.argmin(load[free])]), rows
            overflow += 1
        load[batch] += t
        count[batch] += 1
        placed[batch].append((where, int(i)))
    return [np.array([i for _, i in sorted(p, key=lambda x: x[0])], np.int64) for p in placed], overflow


def _fewest_batches(tokens: np.ndarray, slots: int, length: int, rows: int, fill: float) -> int:
    """The fewest batches (from the tokens' bound at ``fill``, by bisection) whose unseeded placement leaves
    no row without room (one row per batch always fits)."""
    low = max(math.ceil(tokens.sum() / (rows * length * fill)), math.ceil(tokens.size / slots))
    high = max(low, tokens.size)
    while low < high:
        mid = (low + high) // 2
        if _place(tokens, slots, length, rows, mid, None)[1]:
            low = mid + 1
        else:
            high = mid
    return low


class PackedPlanner:
    """Epoch plans of batches that fill R x P packed rows (see the module docstring).

    bucket_ids [N], buckets (``sizes``: the rows, i.e. example slots, of a bucket's batches), lengths:
    each bucket's longest possible row S. Per bucket a batch holds as many tokens as a bucketed batch at
    ``fill`` (budget = slots x mean row / fill), in R packed rows of P = budget / R tokens (at least S, a
    multiple of 16); the batches n are the fewest whose unseeded placement leaves no row without room.
    R is chosen from budget / (length_factor x S) and the next two multiples of ``row_multiple`` (packed
    rows at most about length_factor x S long) as the one with the least padding (rows longer than half
    a packed row never share one, so the best R depends on the length mix). All depend only on which
    examples a bucket holds, so ``batches_per_epoch`` is the same every epoch; ``rows``, ``lengths`` and
    ``batches`` give R, P and n.
    """

    def __init__(self, item_tokens: np.ndarray, bucket_ids: np.ndarray, buckets: Buckets, lengths: tuple[int, ...],
                 *, fill: float = 0.95, length_factor: float = 1.0, row_multiple: int = 1):
        self.item_tokens, self.bucket_ids, self.buckets = np.asarray(item_tokens, np.int64), bucket_ids, buckets
        geometry = []  # (R, P, n) per bucket
        for k, (slots, shortest) in enumerate(zip(buckets.sizes, lengths, strict=True)):
            tokens = self.item_tokens[bucket_ids == k]
            if tokens.size == 0:
                geometry.append((row_multiple, shortest, 0))
                continue
            if tokens.max() > shortest:
                raise ValueError(f"bucket {k}: a row of {tokens.max()} tokens exceeds its packed rows of {shortest}")
            budget = slots * tokens.mean() / fill  # a bucketed batch's tokens, at fill
            center = int(budget / (length_factor * shortest)) // row_multiple
            options = []
            for r in {max(1, c) * row_multiple for c in range(center, center + 3)}:
                length = max(shortest, int(round_up(math.ceil(budget / r), 16)))
                n = _fewest_batches(tokens, slots, length, r, fill)
                options.append((n * r * length, r, length, n))  # positions per epoch, then fewer rows
            _, r, length, n = min(options)
            geometry.append((r, length, n))
        self.rows, self.lengths, self.batches = (tuple(g) for g in zip(*geometry, strict=True))

    @property
    def batches_per_epoch(self) -> int:
        return sum(self.batches)

    def plan(self, *, seed: int, epoch: int, shuffle: bool = True) -> list[tuple[int, np.ndarray]]:
        """Batches of one epoch as ``(bucket, example indices [slots])``, filler slots ``PAD_ROW``;
        deterministic in ``(seed, epoch)``; ``shuffle=False``: no randomness, buckets in order."""
        rng = np.random.default_rng([seed, epoch]) if shuffle else None
        plan = []
        for k, (slots, length) in enumerate(zip(self.buckets.sizes, self.lengths, strict=True)):
            members = np.flatnonzero(self.bucket_ids == k)
            if members.size:
                placed, _ = _place(self.item_tokens[members], slots, length, self.rows[k], self.batches[k], rng)
                plan += [(k, np.pad(members[p], (0, slots - len(p)), constant_values=PAD_ROW)) for p in placed]
        return [plan[i] for i in rng.permutation(len(plan))] if shuffle else plan

    def _rows_used(self, bucket: int, rows: np.ndarray) -> int:
        return max(self.rows[bucket], next_fit(self.item_tokens[rows[rows >= 0]], self.lengths[bucket])[2])

    def padding(self, plan: list[tuple[int, np.ndarray]]) -> float:
        """Share of padded positions of ``plan``'s packed rows (R x P per batch, more where a batch grew)."""
        tokens = sum(int(self.item_tokens[rows[rows >= 0]].sum()) for _, rows in plan)
        return 1.0 - tokens / sum(self._rows_used(k, rows) * self.lengths[k] for k, rows in plan)

    def grown(self, plan: list[tuple[int, np.ndarray]]) -> int:
        """Batches of ``plan`` that need more than their bucket's R packed rows."""
        return sum(self._rows_used(k, rows) > self.rows[k] for k, rows in plan)
