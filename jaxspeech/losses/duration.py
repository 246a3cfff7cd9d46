"""Matcha-TTS (Glow-TTS family) duration and prior losses over arrays.

The duration predictor regresses log frames per token against the monotonic alignment;
the prior loss pulls the frame-level text means towards the mel frames they are aligned to.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp


def duration_loss(log_durations: jax.Array, durations: jax.Array, text_mask: jax.Array) -> jax.Array:
    """``sum((logw - log(1e-8 + d))^2) / sum(x_lengths)`` over valid tokens, a scalar.

    log_durations: [B,T_text] predicted log frames per token (Matcha feeds the predictor the
    detached encoder output); durations: [B,T_text] target frames per token, e.g. from
    ``durations_from_path`` of the MAS alignment; text_mask: [B,T_text] bool.
    """
    chex.assert_rank([log_durations, durations, text_mask], 2)
    chex.assert_equal_shape([log_durations, durations, text_mask])
    mask = text_mask.astype(bool)
    target = jnp.log(1e-8 + durations.astype(jnp.float32))
    error = jnp.where(mask, jnp.square(log_durations.astype(jnp.float32) - target), 0.0)
    return jnp.sum(error) / jnp.maximum(jnp.sum(mask), 1)


def prior_loss(mel: jax.Array, frame_means: jax.Array, mel_mask: jax.Array) -> jax.Array:
    """Mean unit-variance Gaussian negative log-likelihood of the mel frames, a scalar.

    ``sum(0.5 ((y - mu_y)^2 + log 2 pi) * mask) / (sum(mask) * F)`` with mel y [B,T,F], aligned
    text means mu_y [B,T,F] (the token means expanded by the alignment) and mel_mask [B,T] bool.
    """
    chex.assert_rank([mel, frame_means, mel_mask], [3, 3, 2])
    chex.assert_equal_shape([mel, frame_means])
    chex.assert_equal_shape_prefix([mel, mel_mask], 2)
    mask = mel_mask.astype(bool)[..., None]
    nll = 0.5 * (jnp.square(mel.astype(jnp.float32) - frame_means.astype(jnp.float32)) + math.log(2 * math.pi))
    return jnp.sum(jnp.where(mask, nll, 0.0)) / jnp.maximum(jnp.sum(mask) * mel.shape[-1], 1)
