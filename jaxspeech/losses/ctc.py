"""Connectionist temporal classification (Graves et al. 2006) with explicit masks.

Labels are right-padded ([B,L] with ``label_mask`` True on the real labels first) and never
contain the blank. An utterance with fewer valid frames than ``ctc_min_frames`` has no
alignment; optax then returns a huge finite loss (about 1e5 per frame), so callers should weight
such utterances out using ``ctc_feasible``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax


def _check_labels(labels: jax.Array, label_mask: jax.Array, blank_id: int) -> None:
    chex.assert_rank([labels, label_mask], 2)
    chex.assert_equal_shape([labels, label_mask])
    if isinstance(labels, jax.core.Tracer) or isinstance(label_mask, jax.core.Tracer):
        return  # values are only checkable outside jit
    labels, label_mask = np.asarray(labels), np.asarray(label_mask, bool)
    if np.any(labels[label_mask] == blank_id):
        rows = sorted(set(np.nonzero(label_mask & (labels == blank_id))[0].tolist()))
        raise ValueError(f"labels contain the blank id {blank_id} at valid positions (batch rows {rows})")
    if np.any(label_mask[:, 1:] & ~label_mask[:, :-1]):
        raise ValueError("label_mask must be right-padded: valid labels first, then padding")


def ctc_loss(
    logits: jax.Array,
    logit_mask: jax.Array,
    labels: jax.Array,
    label_mask: jax.Array,
    *,
    blank_id: int = 0,
) -> jax.Array:
    """Per-utterance CTC negative log-likelihood -log p(labels | logits), shape [B].

    logits: [B,T,V] unnormalised (log-softmax is applied here, in float32); logit_mask: [B,T]
    bool; labels: [B,L] int; label_mask: [B,L] bool, right-padded. Not normalised by length.
    """
    chex.assert_rank([logits, logit_mask], [3, 2])
    chex.assert_equal_shape_prefix([logits, logit_mask], 2)
    _check_labels(labels, label_mask, blank_id)
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels batch {labels.shape[0]} != logits batch {logits.shape[0]}")
    return optax.ctc_loss(
        logits.astype(jnp.float32),
        1.0 - logit_mask.astype(jnp.float32),
        labels.astype(jnp.int32),
        1.0 - label_mask.astype(jnp.float32),
        blank_id=blank_id,
    )


def ctc_min_frames(labels: jax.Array, label_mask: jax.Array) -> jax.Array:
    """Fewest frames any CTC alignment of ``labels`` needs, [B] int32.

    That is the label length plus one separating blank per adjacent repeated pair ("aa" needs "a_a").
    """
    chex.assert_rank([labels, label_mask], 2)
    chex.assert_equal_shape([labels, label_mask])
    length = jnp.sum(label_mask, axis=1, dtype=jnp.int32)
    repeats = (labels[:, 1:] == labels[:, :-1]) & label_mask[:, 1:] & label_mask[:, :-1]
    return length + jnp.sum(repeats, axis=1, dtype=jnp.int32)


def ctc_feasible(logit_mask: jax.Array, labels: jax.Array, label_mask: jax.Array) -> jax.Array:
    """Whether at least one CTC alignment of ``labels`` fits the valid frames, [B] bool."""
    chex.assert_rank(logit_mask, 2)
    frames = jnp.sum(logit_mask, axis=1, dtype=jnp.int32)
    return frames >= ctc_min_frames(labels, label_mask)


def ctc_token_mean(
    logits: jax.Array,
    logit_mask: jax.Array,
    labels: jax.Array,
    label_mask: jax.Array,
    *,
    blank_id: int = 0,
) -> jax.Array:
    """CTC per label token, a scalar: the negative log-likelihoods of the utterances that have labels and
    an alignment (``ctc_feasible``; the others are counted out), summed and divided by their labels.
    Shapes as ``ctc_loss``'s."""
    feasible = ctc_feasible(logit_mask, labels, label_mask) & label_mask.any(axis=1)
    nll = ctc_loss(logits, logit_mask, labels, label_mask, blank_id=blank_id)
    tokens = jnp.sum(jnp.where(feasible[:, None], label_mask, False))
    return jnp.sum(jnp.where(feasible, nll, 0.0)) / jnp.maximum(tokens, 1)
