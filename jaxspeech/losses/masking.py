"""Masks over the leading axes of ``[B, ...]`` data, shared by the regression losses.

A mask is a bool array whose shape is a prefix of the data's: ``[B]`` (per sample) or ``[B, T]``
(per frame of a mel); the remaining axes are the elements of one masked entry.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def prefix_mask(mask: jax.Array | None, x: jax.Array) -> jax.Array:
    """``mask`` as bool, checked to be a leading prefix of ``x``'s shape; None = every sample ([B])."""
    if x.ndim < 2:
        raise ValueError(f"data must be [B, ...] with at least one data axis, got shape {x.shape}")
    mask = jnp.ones(x.shape[:1], bool) if mask is None else jnp.asarray(mask).astype(bool)
    if mask.ndim < 1 or mask.ndim >= x.ndim or mask.shape != x.shape[: mask.ndim]:
        raise ValueError(f"mask shape {mask.shape} must be a leading prefix of the data's {x.shape}")
    return mask


def leading(values: jax.Array, like: jax.Array) -> jax.Array:
    """``values`` over the leading axes of ``like`` ([B] or [B, T]) with trailing size-1 axes up to ``like``'s
    rank, so that it broadcasts against ``like``."""
    return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


def masked_mean(error: jax.Array, mask: jax.Array) -> jax.Array:
    """Sum of ``error`` [B, ...] where the prefix ``mask`` holds, over (valid entries x elements per
    entry), in float32; an all-masked batch gives 0 rather than NaN."""
    error = jnp.where(leading(mask, error), error.astype(jnp.float32), 0.0)
    count = jnp.maximum(jnp.sum(mask) * math.prod(error.shape[mask.ndim:]), 1)
    return jnp.sum(error) / count
