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

from jaxspeech.losses.masking import leading, masked_mean, prefix_mask
from jaxspeech.noise_levels import unit_noise

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
    t = leading(t, x1).astype(x1.dtype)
    x_t = (1 - (1 - sigma_min) * t) * x0 + t * x1
    return x_t, x1 - (1 - sigma_min) * x0


def path_sample(
    x1: jax.Array,
    key: jax.Array,
    *,
    t: jax.Array | None = None,
    sigma_min: float = 1e-4,
    t_min: float = 0.0,
    t_max: float = 1.0,
    noise_mean: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A training point on the path: (x_t, t [B], target velocity), x0 ~ N(noise_mean, I).

    t: [B] times instead of t ~ U(t_min, t_max) per sample. For losses that run the network
    themselves (one forward pass that also serves another loss, as UniVoice's); otherwise use
    ``conditional_flow_matching``.
    """
    if not 0.0 <= sigma_min < 1.0:
        raise ValueError(f"sigma_min must be in [0, 1), got {sigma_min}")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
    k_t, k_noise = jax.random.split(key)
    if t is not None:
        t = jnp.asarray(t, jnp.float32)
        chex.assert_shape(t, (x1.shape[0],))
    else:
        t = jax.random.uniform(k_t, (x1.shape[0],), jnp.float32, t_min, t_max)
    x0 = unit_noise(k_noise, x1.shape, noise_mean=noise_mean, dtype=x1.dtype)
    x_t, target = optimal_transport_path(x0, x1, t, sigma_min=sigma_min)
    return x_t, t, target


def flow_matching_error(prediction: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Squared error summed where ``mask`` (a prefix of the shape; None = all) holds, over (valid entries
    x elements per entry), in float32; 0 for an all-masked batch."""
    chex.assert_equal_shape([prediction, target])
    return masked_mean(jnp.square(prediction.astype(jnp.float32) - target.astype(jnp.float32)),
                       prefix_mask(mask, target))  # fmt: skip


def conditional_flow_matching(
    vector_field: VectorField,
    x1: jax.Array,
    key: jax.Array,
    *,
    mask: jax.Array | None = None,
    cond: Any = None,
    t: jax.Array | None = None,
    sigma_min: float = 1e-4,
    t_min: float = 0.0,
    t_max: float = 1.0,
    noise_mean: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masked conditional flow-matching MSE. Returns (loss, {"flow_mse", "t_mean"}).

    x1: data [B, ...] (2-D points [B,D], mels [B,T,F], images [B,H,W,C]). mask: bool whose shape
    is a prefix of x1's ([B], or [B,T] for a mel); None = all valid; AND a loss span into it to
    train only there (F5, UniVoice infilling). cond: any pytree, passed to ``vector_field``
    unchanged. t: [B] times instead of t ~ U(t_min, t_max) per sample (UniVoice: U(1e-3, 1)).
    noise_mean: the mean of the noise x0, broadcastable to x1 (Grad-TTS: the text prior; None = 0).
    ``vector_field(x_t, t [B], cond) -> like x1``.
    The loss is the sum of squared errors where ``mask`` holds divided by (valid mask entries x
    elements per entry), as in Matcha, which (unlike Matcha's code) also masks the padded frames
    of the target; an all-masked batch gives 0.
    """
    mask = prefix_mask(mask, x1)
    x_t, t, target = path_sample(x1, key, t=t, sigma_min=sigma_min, t_min=t_min, t_max=t_max,
                                 noise_mean=noise_mean)  # fmt: skip
    prediction = vector_field(x_t, t, cond)
    loss = flow_matching_error(prediction, target, mask)
    return loss, {"flow_mse": loss, "t_mean": jnp.mean(t)}
