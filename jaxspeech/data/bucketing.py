"""Length bucketing under a frame budget, planned deterministically per epoch.

Examples are grouped into a few length buckets; bucket ``k`` pads to ``lengths[k]`` frames
and holds ``sizes[k] = max_frames // lengths[k]`` rows (rounded down to ``row_multiple``,
which keeps each batch divisible over data-parallel devices and gradient-accumulation
steps). Every batch therefore has one of ``num_buckets`` shapes, so a jitted train step
compiles at most that many times, and the padding is far below random batching.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

PAD_ROW = -1  # plan entry for a filler row (fully masked)


@dataclasses.dataclass(frozen=True)
class Buckets:
    """Padded lengths ``[K]`` (ascending) and rows per batch ``[K]`` of each bucket."""

    lengths: tuple[int, ...]
    sizes: tuple[int, ...]

    def assign(self, lengths: np.ndarray) -> np.ndarray:
        """Bucket id ``[N]`` of each example length ``[N]``: the smallest bucket that fits it."""
        ids = np.searchsorted(np.asarray(self.lengths), np.asarray(lengths), side="left")
        if np.any(ids >= len(self.lengths)):
            raise ValueError(f"an example of {int(np.max(lengths))} frames exceeds the largest bucket {self.lengths[-1]}")
        return ids


def round_up(x, multiple: int):
    return -(-np.asarray(x) // multiple) * multiple


def make_buckets(lengths: np.ndarray, *, max_frames: int, num_buckets: int, length_multiple: int = 16,
                 row_multiple: int = 1) -> Buckets:
    """Chooses bucket lengths at equal-count quantiles of ``lengths`` ``[N]``, rounded up to ``length_multiple``.

    Each bucket gets as many rows as fit in ``max_frames`` (frames per batch, padding
    included), a multiple of ``row_multiple`` and at least ``row_multiple``.
    """
    lengths = np.asarray(lengths)
    if lengths.size == 0:
        raise ValueError("cannot bucket an empty dataset")
    quantiles = np.quantile(lengths, np.linspace(0, 1, num_buckets + 1)[1:], method="higher")
    bucket_lengths = tuple(int(x) for x in np.unique(round_up(quantiles, length_multiple)))
    sizes = tuple(max(row_multiple, (max_frames // t) // row_multiple * row_multiple) for t in bucket_lengths)
    if sizes[-1] * bucket_lengths[-1] > max_frames:
        logging.warning("max_frames=%d is below %d rows x %d frames: the longest bucket exceeds the budget",
                        max_frames, sizes[-1], bucket_lengths[-1])
    return Buckets(bucket_lengths, sizes)


def plan_epoch(bucket_ids: np.ndarray, buckets: Buckets, *, seed: int, epoch: int,
               shuffle: bool = True) -> list[tuple[int, np.ndarray]]:
    """Batches of one epoch as ``(bucket, example indices [rows])``; filler rows are ``PAD_ROW``.

    Deterministic in ``(seed, epoch)``; the number of batches does not depend on the epoch.
    ``shuffle=False`` keeps index order within buckets and buckets in ascending length.
    """
    rng = np.random.default_rng([seed, epoch])
    batches = []
    for k, rows in enumerate(buckets.sizes):
        members = np.flatnonzero(bucket_ids == k)
        members = rng.permutation(members) if shuffle else members
        for start in range(0, len(members), rows):
            chunk = members[start:start + rows]
            batches.append((k, np.pad(chunk, (0, rows - len(chunk)), constant_values=PAD_ROW)))
    return [batches[i] for i in rng.permutation(len(batches))] if shuffle else batches


def batches_per_epoch(bucket_ids: np.ndarray, buckets: Buckets) -> int:
    counts = np.bincount(bucket_ids, minlength=len(buckets.sizes))
    return int(sum(math.ceil(c / s) for c, s in zip(counts, buckets.sizes)))


def padding_fraction(plan: list[tuple[int, np.ndarray]], lengths: np.ndarray, buckets: Buckets) -> float:
    """Share of padded frames (filler rows included) in a bucketed epoch plan."""
    total = sum(buckets.lengths[k] * len(rows) for k, rows in plan)
    valid = sum(int(lengths[rows[rows >= 0]].sum()) for _, rows in plan)
    return 1.0 - valid / total


def random_batching_padding_fraction(lengths: np.ndarray, *, batch_size: int, seed: int = 0,
                                     length_multiple: int = 16) -> float:
    """Padding share of the baseline: shuffled fixed-size batches padded to their longest example."""
    lengths = np.random.default_rng(seed).permutation(np.asarray(lengths))
    total = valid = 0
    for start in range(0, len(lengths), batch_size):
        chunk = lengths[start:start + batch_size]
        total += int(round_up(chunk.max(), length_multiple)) * batch_size
        valid += int(chunk.sum())
    return 1.0 - valid / total
