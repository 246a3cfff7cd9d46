"""Noise levels as data for denoisers ``D(x, sigma, cond) -> x0_hat`` (Karras et al. 2022, EDM; Song
et al. 2023, consistency models): the Karras sigma grid, the preconditioning coefficients that
turn a raw network ``F(x_in, c_noise, cond)`` into a denoiser, and the unit noise ``z + noise_mean``
that ``x_sigma = x0 + sigma (z + noise_mean)`` adds (a mean: CoMoSpeech and Grad-TTS centre the noise
on the text prior).

A leaf module (jax only): losses, samplers and objectives all read it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

SIGMA_MIN, SIGMA_MAX, RHO, SIGMA_DATA = 0.002, 80.0, 7.0, 0.5  # EDM's defaults

Denoiser = Callable[[jax.Array, jax.Array, Any], jax.Array]
RawNetwork = Callable[[jax.Array, jax.Array, Any], jax.Array]


class Preconditioning(NamedTuple):
    """``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)``; each field is shaped like ``sigma``."""

    c_skip: jax.Array
    c_out: jax.Array
    c_in: jax.Array
    c_noise: jax.Array


def _check_range(sigma_min: float, sigma_max: float) -> None:
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def karras_sigmas(num: int | jax.Array, *, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                  rho: float = RHO, size: int | None = None) -> jax.Array:
    """The Karras grid, increasing: ``sigma_i = (smin^(1/rho) + i/(num-1) (smax^(1/rho) - smin^(1/rho)))^rho``
    for i = 0 .. num-1, so sigma_0 = smin and sigma_{num-1} = smax.

    ``num`` may be traced (a curriculum under jit) when ``size`` fixes the array length: the result is
    [size], holding the grid in its first ``num`` entries and sigma_max after them. Otherwise ``num`` is
    a Python int >= 2 and the result is [num].
    """
    _check_range(sigma_min, sigma_max)
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    if size is None:
        if isinstance(num, bool) or not isinstance(num, int) or num < 2:
            raise ValueError(f"num must be a Python int >= 2 (or give size= for a traced num), got {num!r}")
        size = num
    i = jnp.arange(size, dtype=jnp.float32)
    fraction = jnp.minimum(i / (jnp.asarray(num, jnp.float32) - 1.0), 1.0)
    low, high = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return (low + fraction * (high - low)) ** rho


def check_sigma_grid(sigmas: jax.Array, name: str = "sigmas") -> None:
    """A clear error for a grid (host values) that is not strictly increasing and positive."""
    values = jnp.asarray(sigmas)
    if values.ndim != 1 or values.shape[0] < 2:
        raise ValueError(f"{name} must be a 1-D grid of at least 2 noise levels, got shape {values.shape}")
    if not bool(jnp.all(values > 0)) or not bool(jnp.all(jnp.diff(values) > 0)):
        raise ValueError(f"{name} must be positive and strictly increasing, got {values.tolist()}")


def log_sigma_time(sigma: jax.Array, *, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX) -> jax.Array:
    """``(ln sigma - ln sigma_min) / (ln sigma_max - ln sigma_min)``: the noise level as a time in [0, 1]
    over [sigma_min, sigma_max], for networks that embed a flow time in [0, 1] (an affine map of EDM's
    c_noise = ln(sigma) / 4, so it carries the same information). Shaped like ``sigma``."""
    _check_range(sigma_min, sigma_max)
    return (jnp.log(sigma) - math.log(sigma_min)) / (math.log(sigma_max) - math.log(sigma_min))


def unit_noise(key: jax.Array, shape: tuple[int, ...], *, noise_mean: jax.Array | None = None,
               temperature: float = 1.0, dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """``temperature normal(key, shape) + noise_mean`` [shape]; noise_mean broadcasts to ``shape``
    (None = 0). A level sigma scales it: ``x_sigma = x0 + sigma unit_noise``."""
    if isinstance(temperature, (int, float)) and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    noise = temperature * jax.random.normal(key, shape, dtype)
    return noise if noise_mean is None else noise + jnp.broadcast_to(noise_mean, shape).astype(dtype)


def edm_preconditioning(sigma: jax.Array, *, sigma_data: float = SIGMA_DATA) -> Preconditioning:
    """EDM (Karras et al. 2022, Table 1): c_skip = sd^2 / (s^2 + sd^2), c_out = s sd / sqrt(s^2 + sd^2),
    c_in = 1 / sqrt(s^2 + sd^2), c_noise = ln(s) / 4. ``sigma``: any shape."""
    sigma = jnp.asarray(sigma, jnp.float32)
    total = sigma**2 + sigma_data**2
    return Preconditioning(sigma_data**2 / total, sigma * sigma_data / jnp.sqrt(total), 1.0 / jnp.sqrt(total),
                           0.25 * jnp.log(sigma))


def consistency_preconditioning(sigma: jax.Array, *, sigma_min: float = SIGMA_MIN,
                                sigma_data: float = SIGMA_DATA) -> Preconditioning:
    """Consistency models (Song et al. 2023, appendix C): c_skip = sd^2 / ((s - smin)^2 + sd^2),
    c_out = (s - smin) sd / sqrt(s^2 + sd^2), so D(x, smin) = x (the boundary condition); c_in and
    c_noise as EDM's. ``sigma``: any shape."""
    sigma = jnp.asarray(sigma, jnp.float32)
    edm = edm_preconditioning(sigma, sigma_data=sigma_data)
    return edm._replace(c_skip=sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2),
                        c_out=(sigma - sigma_min) * sigma_data / jnp.sqrt(sigma**2 + sigma_data**2))


def preconditioned(network: RawNetwork, coefficients: Callable[[jax.Array], Preconditioning]) -> Denoiser:
    """The denoiser ``D(x, sigma, cond) = c_skip x + c_out network(c_in x, c_noise, cond)``.

    x: [B, ...]; sigma: [B] (one noise level per sample); ``coefficients``: sigma -> Preconditioning,
    e.g. ``functools.partial(edm_preconditioning, sigma_data=0.5)``.
    """

    def denoiser(x: jax.Array, sigma: jax.Array, cond: Any = None) -> jax.Array:
        sigma = jnp.asarray(sigma, jnp.float32)
        if sigma.shape != x.shape[:1]:
            raise ValueError(f"sigma must be [B] = {x.shape[:1]}, got shape {sigma.shape}")
        c = coefficients(sigma)
        expand = lambda v: v.reshape(v.shape + (1,) * (x.ndim - 1)).astype(x.dtype)
        output = network(expand(c.c_in) * x, c.c_noise, cond)
        return expand(c.c_skip) * x + expand(c.c_out) * output.astype(x.dtype)

    return denoiser
