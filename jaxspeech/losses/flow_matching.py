"""Conditional flow matching (Lipman et al. 2023) over any vector field ``v(x_t, t, cond)``.

The probability path from noise x0 ~ N(0, I) at t = 0 to data x1 at t = 1 is the OT path
``x_t = (1 - (1 - sigma_min) t) x0 + t x1`` with constant velocity ``x1 - (1 - sigma_min) x0``
(Matcha-TTS: sigma_min = 1e-4). sigma_min = 0 is rectified flow (F5-TTS, UniVoice):
``x_t = (1 - t) x0 + t x1``, velocity ``x1 - x0``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp

VectorField = Callable[[jax.Array, jax.Array, Any], jax.Array]


def optimal_transport_path(
    x0: jax.Array, x1: jax.Array, t: jax.Array, *, sigma_min: float = 1e-4
) -> tuple[jax.Array, jax.Array]:
    """Point and target velocity on the OT-CFM path. x0, x1: [B,...]; t: [B].

    Returns (x_t, u) with ``x_t = (1 - (1 - sigma_min) t) x0 + t x1`` and
    ``u = x1 - (1 - sigma_min) x0`` (= d x_t / dt), both [B,...].
    """
    chex.assert_equal_shape([x0, x1])
    chex.assert_rank(t, 1)
    chex.assert_equal_shape_prefix([x0, t], 1)
    t = t.reshape(t.shape + (1,) * (x1.ndim - 1)).astype(x1.dtype)
    x_t = (1 - (1 - sigma_min) * t) * x0 + t * x1
    return x_t, x1 - (1 - sigma_min) * x0


def conditional_flow_matching(
    vector_field: VectorField,
    batch: dict[str, Any],
    key: jax.Array,
    *,
    sigma_min: float = 1e-4,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masked conditional flow-matching MSE. Returns (loss, {"flow_mse", "t_mean"}).

    batch: ``mel`` [B,T,F] data x1; ``mel_mask`` [B,T] bool; optional ``cond`` (any pytree,
    passed to ``vector_field`` unchanged); optional ``loss_mask`` [B,T] bool restricting the
    loss to e.g. the infilled span (F5, UniVoice); optional ``t`` [B] to fix the times instead
    of drawing t ~ U(t_min, t_max) per sample (UniVoice: U(1e-3, 1)).
    The loss is sum of squared errors over the valid frames divided by (valid frames x F), as
    in Matcha, which (unlike Matcha's code) also masks the padded frames of the target.
    ``vector_field(x_t [B,T,F], t [B], cond) -> [B,T,F]``.
    """
    if not 0.0 <= sigma_min < 1.0:
        raise ValueError(f"sigma_min must be in [0, 1), got {sigma_min}")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
    for name in ("mel", "mel_mask"):
        if name not in batch:
            raise KeyError(f"flow matching needs batch[{name!r}]; batch has {sorted(batch)}")
    x1, mask = batch["mel"], batch["mel_mask"]
    chex.assert_rank([x1, mask], [3, 2])
    chex.assert_equal_shape_prefix([x1, mask], 2)
    mask = mask.astype(bool)
    if batch.get("loss_mask") is not None:
        chex.assert_equal_shape([mask, batch["loss_mask"]])
        mask = mask & batch["loss_mask"].astype(bool)

    k_t, k_noise = jax.random.split(key)
    if batch.get("t") is not None:
        t = jnp.asarray(batch["t"], jnp.float32)
        chex.assert_shape(t, (x1.shape[0],))
    else:
        t = jax.random.uniform(k_t, (x1.shape[0],), jnp.float32, t_min, t_max)
    x0 = jax.random.normal(k_noise, x1.shape, x1.dtype)
    x_t, target = optimal_transport_path(x0, x1, t, sigma_min=sigma_min)

    prediction = vector_field(x_t, t, batch.get("cond"))
    chex.assert_equal_shape([prediction, x1])
    error = jnp.square(prediction.astype(jnp.float32) - target.astype(jnp.float32))
    error = jnp.where(mask[..., None], error, 0.0)
    # Dividing by at least one element keeps an all-masked batch at loss 0 rather than NaN.
    count = jnp.maximum(jnp.sum(mask) * x1.shape[-1], 1)
    loss = jnp.sum(error) / count
    return loss, {"flow_mse": loss, "t_mean": jnp.mean(t)}
