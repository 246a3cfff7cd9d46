"""EDM's deterministic samplers (Karras et al. 2022, Algorithm 1) over any denoiser
``D(x, sigma, cond) -> x0_hat``: the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``
integrated from sigma_max down a Karras grid to 0.

Euler takes one denoiser call per step; Heun adds a trapezoidal correction to every step but the last
(which ends at sigma = 0), so ``steps`` Heun steps cost ``2 steps - 1`` calls.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxspeech.noise_levels import RHO, SIGMA_MAX, SIGMA_MIN, Denoiser, karras_sigmas

EDM_METHODS = ("euler", "heun")


def edm_evaluations(method: str, steps: int) -> int:
    """Denoiser calls (NFE) that ``sample_edm(..., method=method, steps=steps)`` makes."""
    if method not in EDM_METHODS:
        raise ValueError(f"unknown EDM method {method!r}; choose one of {list(EDM_METHODS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a Python int >= 1 (it fixes the loop length), got {steps!r}")
    return steps if method == "euler" else 2 * steps - 1


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
) -> jax.Array:
    """x at sigma = 0 from ``sigma_max * normal(key, shape)``, down the Karras grid of ``steps`` levels
    from sigma_max to sigma_min (one level, sigma_max, when steps = 1) and then to 0. Returns [shape].
    """
    edm_evaluations(method, steps)
    if steps == 1:
        levels = jnp.array([sigma_max], jnp.float32)
    else:
        levels = karras_sigmas(steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)[::-1]
    batch = shape[0]

    def slope(x, sigma):
        return (x - denoiser(x, jnp.full((batch,), sigma, jnp.float32), cond)) / sigma

    def step(x, i):  # between two positive levels
        sigma, following = levels[i], levels[i + 1]
        d = slope(x, sigma)
        x_next = x + (following - sigma) * d
        if method == "heun":
            x_next = x + (following - sigma) * 0.5 * (d + slope(x_next, following))
        return x_next, None

    x = sigma_max * jax.random.normal(key, shape, jnp.float32)
    x, _ = jax.lax.scan(step, x, jnp.arange(steps - 1))
    return x - levels[-1] * slope(x, levels[-1])  # the last step, Euler to sigma = 0
