"""How the denoising objectives (edm, ict, ect, cd, ctm) turn the decoder network ``net(x, time, cond)``
into a denoiser, a consistency function or a trajectory function, and the sampler levels they share.

The network embeds a time in [0, 1] (the TTS decoders' sinusoidal embedding, Matcha's), so it reads the
noise level as ``noise_levels.log_sigma_time`` over the objective's [sigma_min, sigma_max]; CTM's
network reads the pair (t, s) as time [B, 2].
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxspeech.losses.ctm import trajectory_function
from jaxspeech.noise_levels import (
    Denoiser,
    consistency_preconditioning,
    edm_preconditioning,
    karras_sigmas,
    log_sigma_time,
    preconditioned,
)
from jaxspeech.objectives import Network
from jaxspeech.samplers.consistency import Trajectory, check_consistency_levels
from jaxspeech.samplers.ode import classifier_free_guidance


def noise_time(sigma: jax.Array, config: Any) -> jax.Array:
    """The network's time input for level ``sigma`` (any shape)."""
    return log_sigma_time(sigma, sigma_min=config.sigma_min, sigma_max=config.sigma_max)


def _coefficients(config: Any, boundary: bool):
    def coefficients(sigma):
        if boundary:
            c = consistency_preconditioning(sigma, sigma_min=config.sigma_min, sigma_data=config.sigma_data)
        else:
            c = edm_preconditioning(sigma, sigma_data=config.sigma_data)
        return c._replace(c_noise=noise_time(sigma, config))

    return coefficients


def edm_denoiser(network: Network, config: Any) -> Denoiser:
    """EDM's preconditioned denoiser over ``network`` (a teacher)."""
    return preconditioned(network, _coefficients(config, boundary=False))


def consistency_function(network: Network, config: Any) -> Denoiser:
    """The consistency parameterisation over ``network``: f(x, sigma_min) = x."""
    return preconditioned(network, _coefficients(config, boundary=True))


def ctm_denoiser(network: Network, config: Any) -> Trajectory:
    """CTM's two-level denoiser g(x, t, s) over a network reading time [B, 2] = (time(t), time(s)):
    EDM-preconditioned in t (so g(x, t, t) is a denoiser), also reading s."""
    coefficients = _coefficients(config, boundary=False)

    def g(x, t, s, cond):
        reads_both = lambda x_in, t_time, c: network(x_in, jnp.stack([t_time, noise_time(s, config)], axis=-1), c)
        return preconditioned(reads_both, coefficients)(x, t, cond)

    return g


def ctm_trajectory(network: Network, config: Any) -> Trajectory:
    """CTM's G(x, t, s) = (s/t) x + (1 - s/t) g(x, t, s) over ``network``."""
    return trajectory_function(ctm_denoiser(network, config))


def guided(fn, uncond: Any, guidance_scale: jax.Array | float | None):
    """``fn(x, *levels, cond)`` under classifier-free guidance (one call on the doubled batch), or ``fn``
    itself when guidance_scale is None."""
    return fn if guidance_scale is None else classifier_free_guidance(fn, uncond, guidance_scale)


def consistency_levels(config: Any, steps: int, sigmas: tuple[float, ...]) -> tuple[float, ...]:
    """The decreasing levels a few-step sampler visits: ``sigmas`` when given, else the top ``steps``
    levels of a Karras grid of steps + 1 levels (CoMoSpeech's multistep sampler; sigma_max alone for one
    step)."""
    if sigmas:
        return check_consistency_levels(sigmas, sigma_min=config.sigma_min, sigma_max=config.sigma_max)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a Python int >= 1, got {steps!r}")
    with jax.ensure_compile_time_eval():  # host values, also when called under jit
        grid = karras_sigmas(steps + 1, sigma_min=config.sigma_min, sigma_max=config.sigma_max, rho=config.rho)
        below = tuple(float(level) for level in grid[::-1][1:steps])
    return (float(config.sigma_max),) + below  # exactly sigma_max, not its float32 rounding


def level_options(config: Any) -> dict[str, float]:
    """sigma_min and sigma_max of ``config`` as keyword arguments."""
    return {"sigma_min": config.sigma_min, "sigma_max": config.sigma_max}

