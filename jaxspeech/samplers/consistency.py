"""Consistency-model sampling (Song et al. 2023, Algorithm 1) over any consistency function
``f(x, sigma, cond) -> x0_hat`` (a denoiser meeting f(x, sigma_min) = x), and CTM's gamma-sampling
(Kim et al. 2024) over any trajectory function ``G(x, t, s, cond)`` that jumps from level t to s <= t.

Consistency: one step maps ``sigma_max z`` to ``f(sigma_max z, sigma_max)``; every further level sigma
re-noises the estimate, ``x + sqrt(sigma^2 - sigma_min^2) z'``, and maps it back with f.
Gamma-sampling: from level t_n, jump to ``s = sqrt(1 - gamma^2) (t_{n+1} - sigma_min) + sigma_min`` and
re-noise from s up to t_{n+1}; the last jump lands on sigma_min. gamma = 0 is deterministic
anytime-to-anytime jumping along the trajectory; gamma = 1 is the consistency sampler above.
The levels are an explicit decreasing list, so one, two or four steps are the same function. With a
noise mean (``x_sigma = x0 + sigma (z + noise_mean)``) every start and re-noising adds its share of it;
``temperature`` scales the Gaussian part.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxspeech.noise_levels import SIGMA_MAX, SIGMA_MIN, Denoiser, unit_noise

Trajectory = Callable[[jax.Array, jax.Array, jax.Array, Any], jax.Array]


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
    temperature: float = 1.0,
    noise_mean: jax.Array | None = None,
) -> jax.Array:
    """A sample [shape] in ``len(sigmas)`` evaluations of ``consistency_fn``, starting from
    ``sigmas[0] (temperature normal(key, shape) + noise_mean)``; ``sigmas`` (host values) is decreasing
    within (sigma_min, sigma_max]. noise_mean: broadcastable to ``shape`` (None = 0)."""
    trajectory = lambda x, t, s, c: consistency_fn(x, t, c)  # every jump lands on sigma_min
    return sample_gamma(trajectory, key, shape, sigmas=sigmas, gamma=1.0, cond=cond, sigma_min=sigma_min,
                        sigma_max=sigma_max, temperature=temperature, noise_mean=noise_mean)


def sample_gamma(
    trajectory: Trajectory,
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    sigmas: Sequence[float] = (SIGMA_MAX,),
    gamma: float = 0.0,
    cond: Any = None,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    temperature: float = 1.0,
    noise_mean: jax.Array | None = None,
) -> jax.Array:
    """CTM gamma-sampling: a sample [shape] in ``len(sigmas)`` calls of ``trajectory(x, t [B], s [B], cond)``,
    starting from ``sigmas[0] (temperature normal + noise_mean)``. gamma in [0, 1] (host value); sigmas as
    in :func:`sample_consistency`."""
    levels = check_consistency_levels(sigmas, sigma_min=sigma_min, sigma_max=sigma_max)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    per_sample = lambda level: jnp.full(shape[:1], level, jnp.float32)
    k_start, k_renoise = jax.random.split(key)
    noise = lambda k: unit_noise(k, shape, temperature=temperature)
    mean = 0.0 if noise_mean is None else jnp.broadcast_to(noise_mean, shape).astype(jnp.float32)
    current = jnp.asarray(levels, jnp.float32)
    following = jnp.asarray(levels[1:] + (sigma_min,), jnp.float32)
    jump_to = jnp.sqrt(1.0 - gamma**2) * (following - sigma_min) + sigma_min

    def jump(x, inputs):
        t, s, t_next, step_key = inputs
        x = trajectory(x, per_sample(t), per_sample(s), cond)
        # Back up to t_next: the noise x_s holds has variance s^2 (its mean s noise_mean); add the rest.
        renoised = x + (t_next - s) * mean + jnp.sqrt(jnp.maximum(t_next**2 - s**2, 0.0)) * noise(step_key)
        return jnp.where(t_next > s, renoised, x), None

    x = levels[0] * (noise(k_start) + mean)
    x, _ = jax.lax.scan(jump, x, (current[:-1], jump_to[:-1], following[:-1],
                                  jax.random.split(k_renoise, len(levels) - 1)))
    return trajectory(x, per_sample(levels[-1]), per_sample(sigma_min), cond)
