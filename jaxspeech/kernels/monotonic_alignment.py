"""Monotonic alignment search (Glow-TTS, Kim et al. 2020; as used by Grad-TTS and Matcha-TTS).

Finds the hard alignment of mel frames to text tokens that maximises the summed log-likelihood
under the constraints that every frame goes to exactly one token, tokens are visited in order
and each token gets at least one frame. The dynamic programme
``Q[x, y] = L[x, y] + max(Q[x, y - 1], Q[x - 1, y - 1])`` runs as a ``lax.scan`` over mel
frames with vector ops over tokens, O(T_text x T_mel) work, and the backtrack is a second scan.
Ties break as in Matcha's Cython ``maximum_path``: backtracking stays on the current token
unless moving to the previous one is strictly better.

``reference`` is the plain-JAX definition; ``monotonic_alignment`` is the checked, jitted entry
point. Both take masks, not lengths: padding is ignored whatever it holds.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np


def reference(log_likelihood: jax.Array, text_mask: jax.Array, mel_mask: jax.Array) -> jax.Array:
    """Maximum-likelihood monotonic path. Plain JAX, no input checks (see ``monotonic_alignment``).

    log_likelihood: [B,T_text,T_mel]; text_mask: [B,T_text], mel_mask: [B,T_mel] bool,
    right-padded, with at most as many valid tokens as valid frames. Returns the path
    [B,T_text,T_mel] float32 of 0/1, zero on padding.
    """
    value = jax.lax.stop_gradient(log_likelihood).astype(jnp.float32)
    valid = text_mask[:, :, None] & mel_mask[:, None, :]
    value = jnp.where(valid, value, 0.0)  # padding may hold anything, NaN included
    batch, n_text, n_mel = value.shape
    text_len = jnp.sum(text_mask, axis=1, dtype=jnp.int32)
    mel_len = jnp.sum(mel_mask, axis=1, dtype=jnp.int32)

    # Forward DP over frames. Q stays -inf above the diagonal (token x needs x + 1 frames first),
    # and the path may enter token 0 only at frame 0. Each step also records, per token, whether
    # arriving from the previous token beat staying, which is all the backtrack needs.
    def forward(q_prev, inputs):
        frame, value_y = inputs
        start = jnp.where(frame == 0, 0.0, -jnp.inf)
        q_advance = jnp.concatenate([jnp.full((batch, 1), start), q_prev[:, :-1]], axis=1)
        q = value_y + jnp.maximum(q_prev, q_advance)
        return q, q_prev < q_advance

    q_init = jnp.full((batch, n_text), -jnp.inf, jnp.float32)
    frames = jnp.arange(n_mel)
    _, advance = jax.lax.scan(forward, q_init, (frames, jnp.moveaxis(value, 2, 0)))  # [T_mel,B,T_text]

    # Backtrack from (last token, last frame) of each utterance; frames past its end are skipped.
    def backward(token, inputs):
        frame, advance_y = inputs
        active = frame < mel_len
        row = jax.nn.one_hot(token, n_text, dtype=jnp.float32) * active[:, None]
        came_from_previous = jnp.take_along_axis(advance_y, token[:, None], axis=1)[:, 0]
        # token == frame forces the move even when every score ties at -inf, so that the path
        # stays a valid alignment (each earlier token still gets a frame).
        move = active & (token > 0) & ((token == frame) | came_from_previous)
        return token - move.astype(jnp.int32), row

    _, rows = jax.lax.scan(backward, text_len - 1, (frames, advance), reverse=True)
    return jnp.moveaxis(rows, 0, 2)


_reference_jit = jax.jit(reference)


def _check_prefix_mask(mask: np.ndarray, name: str) -> None:
    if np.any(mask[:, 1:] & ~mask[:, :-1]):
        raise ValueError(f"{name} must be right-padded: valid positions first, then padding")


def monotonic_alignment(log_likelihood: jax.Array, text_mask: jax.Array, mel_mask: jax.Array) -> jax.Array:
    """Monotonic alignment search, jit-compiled. Shapes and semantics as ``reference``.

    Outside jit the masks are also checked: right-padded, and every utterance needs
    1 <= valid tokens <= valid frames (otherwise no alignment exists). Under an outer jit these
    value checks are skipped and an infeasible row gives an unspecified path.
    """
    chex.assert_rank([log_likelihood, text_mask, mel_mask], [3, 2, 2])
    batch, n_text, n_mel = log_likelihood.shape
    if text_mask.shape != (batch, n_text) or mel_mask.shape != (batch, n_mel):
        raise ValueError(
            f"masks must be [B,T_text] = {(batch, n_text)} and [B,T_mel] = {(batch, n_mel)}, "
            f"got {text_mask.shape} and {mel_mask.shape}"
        )
    try:
        text_np, mel_np = np.asarray(text_mask, bool), np.asarray(mel_mask, bool)
    except jax.errors.TracerArrayConversionError:
        text_np = None  # traced: values are only checkable outside jit
    if text_np is not None:
        _check_prefix_mask(text_np, "text_mask")
        _check_prefix_mask(mel_np, "mel_mask")
        text_len, mel_len = text_np.sum(1), mel_np.sum(1)
        bad = np.nonzero((text_len < 1) | (text_len > mel_len))[0]
        if bad.size:
            raise ValueError(
                "monotonic alignment needs 1 <= tokens <= frames; batch rows "
                f"{bad.tolist()} have tokens {text_len[bad].tolist()} and frames {mel_len[bad].tolist()}"
            )
    return _reference_jit(log_likelihood, text_mask.astype(bool), mel_mask.astype(bool))


def gaussian_log_likelihood(means: jax.Array, mel: jax.Array) -> jax.Array:
    """log N(mel frame | token mean, I) for every (token, frame) pair, [B,T_text,T_mel].

    means: [B,T_text,F] text-side means; mel: [B,T_mel,F]. Expanded as
    -|y|^2/2 + mu.y - |mu|^2/2 - F/2 log(2 pi) so the cost is one batched matmul (as Matcha).
    Padding is not masked here; ``monotonic_alignment`` ignores it.
    """
    chex.assert_rank([means, mel], 3)
    if means.shape[0] != mel.shape[0] or means.shape[2] != mel.shape[2]:
        raise ValueError(f"means [B,T_text,F] {means.shape} and mel [B,T_mel,F] {mel.shape} disagree on B or F")
    means, mel = means.astype(jnp.float32), mel.astype(jnp.float32)
    cross = jnp.einsum("bxf,byf->bxy", means, mel)
    mel_sq = jnp.sum(jnp.square(mel), axis=-1)[:, None, :]
    means_sq = jnp.sum(jnp.square(means), axis=-1)[:, :, None]
    return cross - 0.5 * (mel_sq + means_sq) - 0.5 * mel.shape[-1] * math.log(2 * math.pi)


def durations_from_path(path: jax.Array) -> jax.Array:
    """Frames per token of an alignment path [B,T_text,T_mel], as [B,T_text] int32."""
    chex.assert_rank(path, 3)
    return jnp.sum(path, axis=-1).astype(jnp.int32)
