"""Consistency-model sampling (Song et al. 2023, Algorithm 1) over any consistency function
``f(x, sigma, cond) -> x0_hat`` (a denoiser meeting f(x, sigma_min) = x).

One step maps ``sigma_max z`` to ``f(sigma_max z, sigma_max)``; every further level sigma re-noises
the estimate, ``x + sqrt(sigma^2 - sigma_min^2) z'``, and maps it back with f. The levels are an
explicit decreasing list, so one, two or four steps are the same function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxspeech.noise_levels import SIGMA_MAX, SIGMA_MIN, Denoiser


def check_consistency_levels(sigmas: Sequence[float], *, sigma_min: float = SIGMA_MIN,
                             sigma_max: float = SIGMA_MAX) -> tuple[float, ...]:
    """``sigmas`` as floats, checked: strictly decreasing, inside (sigma_min, sigma_max]."""
    levels = tuple(float(s) for s in sigmas)
    if not levels:
        raise ValueError("sigmas must hold at least one noise level (the first is where sampling starts)")
    if any(a <= b for a, b in zip(levels, levels[1:])):
        raise ValueError(f"sigmas must be strictly decreasing, got {list(levels)}")
    if levels[0] > sigma_max or levels[-1] <= sigma_min:
        raise ValueError(f"sigmas must lie in (sigma_min, sigma_max] = ({sigma_min}, {sigma_max}], got {list(levels)}")
    return levels


def sample_consistency(
    consistency_fn: Denoiser,
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    sigmas: Sequence[float] = (SIGMA_MAX,),
    cond: Any = None,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
) -> jax.Array:
    """A sample [shape] in ``len(sigmas)`` evaluations of ``consistency_fn``, starting from
    ``sigmas[0] * normal(key, shape)``; ``sigmas`` (host values) is decreasing within
    (sigma_min, sigma_max]."""
    levels = jnp.asarray(check_consistency_levels(sigmas, sigma_min=sigma_min, sigma_max=sigma_max), jnp.float32)
    batch = shape[0]
    k_start, k_renoise = jax.random.split(key)

    def estimate(x, sigma):
        return consistency_fn(x, jnp.full((batch,), sigma, jnp.float32), cond)

    def renoise_and_map(x, inputs):
        sigma, step_key = inputs
        noisy = x + jnp.sqrt(sigma**2 - sigma_min**2) * jax.random.normal(step_key, shape, jnp.float32)
        return estimate(noisy, sigma), None

    x = estimate(levels[0] * jax.random.normal(k_start, shape, jnp.float32), levels[0])
    later = levels[1:]
    x, _ = jax.lax.scan(renoise_and_map, x, (later, jax.random.split(k_renoise, later.shape[0])))
    return x
