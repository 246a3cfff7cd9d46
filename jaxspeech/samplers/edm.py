"""EDM's deterministic samplers (Karras et al. 2022, Algorithm 1) over any denoiser
``D(x, sigma, cond) -> x0_hat``: the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``
integrated from sigma_max down a Karras grid to 0.

Euler takes one denoiser call per step; Heun adds a trapezoidal correction to every step but the last
(which ends at sigma = 0), so ``steps`` Heun steps cost ``2 steps - 1`` calls.

The noise may have a mean (CoMoSpeech and Grad-TTS centre it on the text prior): ``x_sigma = x0 +
sigma (z + noise_mean)``. The same ODE moves it, since ``(x - D(x, sigma)) / sigma`` is still the
expected noise given x; only the starting point changes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxspeech.noise_levels import RHO, SIGMA_MAX, SIGMA_MIN, Denoiser, karras_sigmas, unit_noise

EDM_METHODS = ("euler", "heun")


def edm_evaluations(method: str, steps: int) -> int:
    """Denoiser calls (NFE) that ``sample_edm(..., method=method, steps=steps)`` makes."""
    if method not in EDM_METHODS:
        raise ValueError(f"unknown EDM method {method!r}; choose one of {list(EDM_METHODS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a Python int >= 1 (it fixes the loop length), got {steps!r}")
    return steps if method == "euler" else 2 * steps - 1


def probability_flow_step(denoiser: Denoiser, x: jax.Array, sigma: jax.Array, sigma_next: jax.Array, *,
                          cond: Any = None, method: str = "euler") -> jax.Array:
    """One step of ``dx/dsigma = (x - D(x, sigma)) / sigma`` from ``sigma`` to ``sigma_next`` (> 0 for
    Heun). x: [B, ...]; sigma, sigma_next: [B] per-sample levels."""
    if method not in EDM_METHODS:
        raise ValueError(f"unknown EDM method {method!r}; choose one of {list(EDM_METHODS)}")
    expand = lambda v: v.reshape(v.shape + (1,) * (x.ndim - 1)).astype(x.dtype)

    def slope(x, sigma):
        return (x - denoiser(x, sigma, cond)) / expand(sigma)

    d = slope(x, sigma)
    x_next = x + expand(sigma_next - sigma) * d
    if method == "heun":
        x_next = x + expand(sigma_next - sigma) * 0.5 * (d + slope(x_next, sigma_next))
    return x_next


def sample_edm(
    denoiser: Denoiser,
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    cond: Any = None,
    steps: int = 18,
    method: str = "heun",
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
    temperature: float = 1.0,
    noise_mean: jax.Array | None = None,
) -> jax.Array:
    """x at sigma = 0 from ``sigma_max (temperature normal(key, shape) + noise_mean)``, down the Karras
    grid of ``steps`` levels from sigma_max to sigma_min (one level, sigma_max, when steps = 1) and then
    to 0. noise_mean: broadcastable to ``shape`` (None = 0). Returns [shape].
    """
    edm_evaluations(method, steps)
    if steps == 1:
        levels = jnp.array([sigma_max], jnp.float32)
    else:
        levels = karras_sigmas(steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)[::-1]
    per_sample = lambda sigma: jnp.full(shape[:1], sigma, jnp.float32)

    def step(x, i):  # between two positive levels
        return probability_flow_step(denoiser, x, per_sample(levels[i]), per_sample(levels[i + 1]), cond=cond,
                                     method=method), None

    x = sigma_max * unit_noise(key, shape, noise_mean=noise_mean, temperature=temperature)
    x, _ = jax.lax.scan(step, x, jnp.arange(steps - 1))
    return denoiser(x, per_sample(levels[-1]), cond)  # the last step, Euler to sigma = 0, lands on D(x)

