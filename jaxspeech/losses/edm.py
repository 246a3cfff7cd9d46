"""EDM denoising loss (Karras et al. 2022) over any denoiser ``D(x, sigma, cond) -> x0_hat``.

Noise levels are lognormal, ``ln sigma ~ N(p_mean, p_std^2)`` (EDM: -1.2, 1.2), and each sample's
squared error is weighted by ``lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2``, which is
``1 / c_out^2`` of EDM's preconditioning: the raw network's target has unit weight at every level.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp

from jaxspeech.losses.masking import leading, masked_mean, prefix_mask
from jaxspeech.noise_levels import SIGMA_DATA, Denoiser, unit_noise


def edm_weight(sigma: jax.Array, *, sigma_data: float = SIGMA_DATA) -> jax.Array:
    """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2, shaped like ``sigma``."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(
    denoiser: Denoiser,
    x1: jax.Array,
    key: jax.Array,
    *,
    mask: jax.Array | None = None,
    cond: Any = None,
    sigma: jax.Array | None = None,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float = SIGMA_DATA,
    noise_mean: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masked EDM-weighted denoising MSE. Returns (loss, {"edm_loss", "denoising_mse", "sigma_median"}).

    x1: data [B, ...]; mask: bool, a prefix of x1's shape (None = all valid); sigma: [B] noise levels
    instead of lognormal draws; noise_mean: broadcastable to x1, the noise n ~ N(noise_mean, I) (None = 0).
    ``denoiser(x1 + sigma n, sigma [B], cond) -> like x1``. The weighted
    squared error is averaged over the valid entries' elements, as the flow-matching loss is.
    """
    if p_std <= 0:
        raise ValueError(f"p_std must be > 0, got {p_std}")
    mask = prefix_mask(mask, x1)
    k_sigma, k_noise = jax.random.split(key)
    if sigma is None:
        sigma = jnp.exp(p_mean + p_std * jax.random.normal(k_sigma, x1.shape[:1], jnp.float32))
    sigma = jnp.asarray(sigma, jnp.float32)
    chex.assert_shape(sigma, x1.shape[:1])
    noise = unit_noise(k_noise, x1.shape, noise_mean=noise_mean, dtype=x1.dtype)
    expand = leading(sigma, x1)
    prediction = denoiser(x1 + expand.astype(x1.dtype) * noise, sigma, cond)
    chex.assert_equal_shape([prediction, x1])
    error = jnp.square(prediction.astype(jnp.float32) - x1.astype(jnp.float32))
    loss = masked_mean(edm_weight(expand, sigma_data=sigma_data) * error, mask)
    return loss, {"edm_loss": loss, "denoising_mse": masked_mean(error, mask), "sigma_median": jnp.median(sigma)}
