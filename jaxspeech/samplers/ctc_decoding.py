"""CTC decoding: greedy (best path) in jnp, and prefix beam search on the host in numpy.

The CTC collapse maps a frame-level path to a labelling by merging adjacent repeats and then
dropping blanks ("aa_ab" -> "aab").
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np


def greedy_decode(
    logits: jax.Array, logit_mask: jax.Array, *, blank_id: int = 0
) -> tuple[jax.Array, jax.Array]:
    """Best-path decoding: argmax per frame, then the CTC collapse. Jit-able.

    logits: [B,T,V] (or log-probs); logit_mask: [B,T] bool. Returns (ids [B,T] int32 holding the
    collapsed labels first and -1 after them, lengths [B] int32).
    """
    chex.assert_rank([logits, logit_mask], [3, 2])
    chex.assert_equal_shape_prefix([logits, logit_mask], 2)
    batch, frames = logit_mask.shape
    best = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    previous = jnp.pad(best[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
    keep = logit_mask & (best != blank_id) & (best != previous)
    slot = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, frames)  # out-of-range slots are dropped
    rows = jnp.broadcast_to(jnp.arange(batch)[:, None], (batch, frames))
    ids = jnp.full((batch, frames), -1, jnp.int32).at[rows, slot].set(best, mode="drop")
    return ids, jnp.sum(keep, axis=1, dtype=jnp.int32)


def _check_log_probs(log_probs: np.ndarray) -> None:
    total = np.logaddexp.reduce(log_probs, axis=-1)
    if not np.allclose(total, 0.0, atol=1e-3):
        raise ValueError(
            "prefix beam search needs log-probabilities (log_softmax over the vocabulary); "
            f"rows sum to exp({total.min():.3g}..{total.max():.3g})"
        )


def prefix_beam_search(
    log_probs: np.ndarray,
    *,
    beam_size: int = 8,
    blank_id: int = 0,
    length: int | None = None,
) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search (Hannun et al. 2014, arXiv:1408.2873) in log space.

    log_probs: [T,V] per-frame log-probabilities; only the first ``length`` frames are used
    (default all). Each hypothesis carries log p(prefix, path ends in blank) and
    log p(prefix, path ends in its last label), summed over every path kept in the beam, so when no
    prefix is ever pruned the scores are the exact log-probabilities of the labellings.
    Returns up to ``beam_size`` (labels, log_prob) pairs, most probable first.
    """
    log_probs = np.asarray(log_probs, np.float64)
    if log_probs.ndim != 2:
        raise ValueError(f"log_probs must be [T,V], got shape {log_probs.shape}")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    frames = log_probs.shape[0] if length is None else int(length)
    if not 0 <= frames <= log_probs.shape[0]:
        raise ValueError(f"length {length} outside [0, {log_probs.shape[0]}]")
    log_probs = log_probs[:frames]
    _check_log_probs(log_probs)
    vocab = log_probs.shape[1]

    prefixes: list[tuple[int, ...]] = [()]
    p_blank = np.array([0.0])
    p_label = np.array([-np.inf])
    for lp in log_probs:
        total = np.logaddexp(p_blank, p_label)
        # Extending prefix i with label c: from any path, except that repeating the last label
        # needs a blank in between (otherwise it collapses into the same prefix).
        extend = total[:, None] + lp[None, :]
        extend[:, blank_id] = -np.inf
        last = np.array([p[-1] if p else -1 for p in prefixes])
        has_last = last >= 0
        extend[has_last, last[has_last]] = p_blank[has_last] + lp[last[has_last]]
        # Staying on the same prefix: emit a blank, or repeat the last label.
        stay_blank = total + lp[blank_id]
        stay_label = np.full_like(total, -np.inf)
        stay_label[has_last] = p_label[has_last] + lp[last[has_last]]
        # An extension that equals another beam entry merges into that entry.
        index = {p: i for i, p in enumerate(prefixes)}
        for j, p in enumerate(prefixes):
            parent = index.get(p[:-1]) if p else None
            if parent is not None:
                stay_label[j] = np.logaddexp(stay_label[j], extend[parent, p[-1]])
                extend[parent, p[-1]] = -np.inf
        scores = np.concatenate([np.logaddexp(stay_blank, stay_label), extend.ravel()])
        num = len(prefixes)
        keep = np.argsort(-scores, kind="stable")[:beam_size]
        keep = keep[np.isfinite(scores[keep])]
        new_prefixes, new_blank, new_label = [], [], []
        for k in keep:
            if k < num:
                new_prefixes.append(prefixes[k])
                new_blank.append(stay_blank[k])
                new_label.append(stay_label[k])
            else:
                i, c = divmod(int(k) - num, vocab)
                new_prefixes.append(prefixes[i] + (c,))
                new_blank.append(-np.inf)
                new_label.append(extend[i, c])
        prefixes, p_blank, p_label = new_prefixes, np.array(new_blank), np.array(new_label)

    totals = np.logaddexp(p_blank, p_label)
    order = np.argsort(-totals, kind="stable")
    return [(prefixes[i], float(totals[i])) for i in order]


def beam_search_batch(
    log_probs: np.ndarray | jax.Array,
    lengths: Sequence[int] | np.ndarray | jax.Array,
    *,
    beam_size: int = 8,
    blank_id: int = 0,
) -> list[list[tuple[tuple[int, ...], float]]]:
    """``prefix_beam_search`` over a batch: log_probs [B,T,V], lengths [B] valid frames per row."""
    log_probs = np.asarray(log_probs)
    lengths = np.asarray(lengths)
    if log_probs.ndim != 3 or lengths.shape != log_probs.shape[:1]:
        raise ValueError(f"expected log_probs [B,T,V] and lengths [B], got {log_probs.shape}, {lengths.shape}")
    return [
        prefix_beam_search(row, beam_size=beam_size, blank_id=blank_id, length=int(n))
        for row, n in zip(log_probs, lengths)
    ]
