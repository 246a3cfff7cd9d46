"""EMO: Earth Mover Distance Optimization for autoregressive models (Ren et al., ICLR 2024).

The transport cost between tokens i and j is C(i, j) = 1 - cos(e_i, e_j) over an embedding table
(the lm_head / tied token embeddings), L2-normalised and held constant (stop-gradient). Against
a one-hot target y the earth mover distance has the closed form
    emo = sum_i q_i C(i, y) = 1 - (q @ E) . e_y,    q = softmax(logits),
so the [V,V] cost matrix is never built: one [B,L,V] x [V,D] product does it.

EMO is combined with cross-entropy (mle) per token, in the two published ways:
    "mle_scale": 0.5 (mle + sg(mle / emo) emo)   (language modelling; the loss reads like CE)
    "emo_scale": sg(emo / mle) mle + emo         (the Llama fine-tuning variant)
Both are averaged over non-pad tokens.

These are functions of logits rather than of a model callable: which positions are targets
(the teacher-forcing shift, forced prefix tokens) is the model's business, so a model's loss_fn
calls its decoder and passes logits, targets, mask and its output embedding table here. The
table may be the current lm_head (the cost then follows training) or a frozen copy taken at the
start of fine-tuning, as in the reference code.
"""

from __future__ import annotations

from typing import Literal

import chex
import jax
import jax.numpy as jnp
import numpy as np

Combine = Literal["mle_scale", "emo_scale"]

_RATIO_EPS = 1e-10  # keeps sg(a / b) finite where a term is exactly 0


def _check_inputs(logits, targets, token_mask, embedding) -> None:
    chex.assert_rank([logits, targets, token_mask, embedding], [3, 2, 2, 2])
    chex.assert_equal_shape([targets, token_mask])
    if logits.shape[:2] != targets.shape:
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} disagree on [B,L]")
    if embedding.shape[0] != logits.shape[-1]:
        raise ValueError(
            f"embedding has {embedding.shape[0]} rows but logits have vocab {logits.shape[-1]}"
        )
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise ValueError(f"targets must be integer token ids, got {targets.dtype}")
    if isinstance(targets, jax.core.Tracer) or isinstance(token_mask, jax.core.Tracer):
        return  # values are only checkable outside jit
    valid = np.asarray(targets)[np.asarray(token_mask, bool)]
    if valid.size and (valid.min() < 0 or valid.max() >= logits.shape[-1]):
        raise ValueError(
            f"targets at valid positions must lie in [0, {logits.shape[-1]}), "
            f"got {valid.min()}..{valid.max()}"
        )


def _at_least_float32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def cost_embeddings(embedding: jax.Array) -> jax.Array:
    """L2-normalised, stop-gradient rows of `embedding` [V,D] (at least float32); C = 1 - E E^T."""
    table = _at_least_float32(jax.lax.stop_gradient(embedding))
    norm = jnp.linalg.norm(table, axis=-1, keepdims=True)
    return table / jnp.maximum(norm, 1e-12)


def emo_distance(logits: jax.Array, targets: jax.Array, embedding: jax.Array) -> jax.Array:
    """Per-token EMO sum_i softmax(logits)_i (1 - cos(e_i, e_target)), [B,L] (at least float32).

    logits: [B,L,V]; targets: [B,L] int (any value where masked out; clipped into range);
    embedding: [V,D]. Differentiable in logits only.
    """
    table = cost_embeddings(embedding)
    probs = jax.nn.softmax(_at_least_float32(logits), axis=-1)
    target_rows = table[jnp.clip(targets, 0, logits.shape[-1] - 1)]
    expected_row = jnp.einsum("blv,vd->bld", probs, table)
    return 1.0 - jnp.sum(expected_row * target_rows, axis=-1)


def token_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-token -log softmax(logits)[target], [B,L] (at least float32; targets clipped into range)."""
    log_probs = jax.nn.log_softmax(_at_least_float32(logits), axis=-1)
    safe = jnp.clip(targets, 0, logits.shape[-1] - 1)
    return -jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]


def emo_loss(
    logits: jax.Array,
    targets: jax.Array,
    token_mask: jax.Array,
    embedding: jax.Array,
    *,
    combine: Combine = "mle_scale",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """EMO combined with cross-entropy, averaged over tokens where `token_mask` is True.

    logits: [B,L,V]; targets: [B,L] int; token_mask: [B,L] bool; embedding: [V,D] (stop-gradient).
    Returns (loss [], {"ce": mean CE, "emo": mean EMO}); padded positions contribute nothing.
    """
    _check_inputs(logits, targets, token_mask, embedding)
    if combine not in ("mle_scale", "emo_scale"):
        raise ValueError(f"combine must be 'mle_scale' or 'emo_scale', got {combine!r}")
    mle = token_cross_entropy(logits, targets)
    emo = emo_distance(logits, targets, embedding)
    sg = jax.lax.stop_gradient
    if combine == "mle_scale":
        per_token = 0.5 * (mle + sg(mle / (emo + _RATIO_EPS)) * emo)
    else:
        per_token = sg(emo / (mle + _RATIO_EPS)) * mle + emo
    count = jnp.maximum(jnp.sum(token_mask, dtype=mle.dtype), 1.0)

    def masked_mean(x):
        # where, not multiply: a non-finite value at a padded position must not leak in
        return jnp.sum(jnp.where(token_mask, x, 0.0)) / count

    return masked_mean(per_token), {"ce": masked_mean(mle), "emo": masked_mean(emo)}
