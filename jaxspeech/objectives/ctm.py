"""Consistency Trajectory Models (Kim et al. 2024; SoundCTM) as an objective: the network reads two
levels (time [B, 2] = (t, s)) and, as ``G(x, t, s) = (s/t) x + (1 - s/t) g(x, t, s)``, jumps from any
level to any lower one. Initialised from an EDM teacher and distilled from it with the CTM loss plus
the denoising loss; sampled by gamma-sampling.

Config (``config.model.decoder.ctm``): ``sigma_data``, ``sigma_min``, ``sigma_max``, ``rho`` (EDM's),
``num_levels`` 40, ``teacher_steps`` 39 (most teacher solver steps per target: the whole grid, the
paper's), ``solver`` "heun", ``ema_decay`` 0.999, ``denoising_weight`` 1 (SoundCTM's),
``adaptive_weight`` True (the denoising term also scaled by the ratio of the two terms' gradient norms, the
authors' default), ``p_mean`` -1.2, ``p_std`` 1.2 (the denoising loss's levels, the teacher's),
``teacher_workdir``.
Sampler options: ``steps`` (1), ``sigmas`` (explicit decreasing levels; empty = the top ``steps`` of a
Karras grid of steps + 1), ``gamma`` (0 = deterministic jumps, 1 = consistency multistep),
``temperature``.
"""

from __future__ import annotations

from typing import Any

import jax

from jaxspeech.losses.ctm import ctm_loss
from jaxspeech.noise_levels import RHO, SIGMA_DATA, SIGMA_MAX, SIGMA_MIN
from jaxspeech.objectives import Network, Objective, TrainingContext, consistency_sampling, register
from jaxspeech.objectives.parameterisation import (
    consistency_levels,
    ctm_denoiser,
    ctm_trajectory,
    edm_denoiser,
    guided,
    level_options,
)
from jaxspeech.samplers.consistency import sample_gamma


def default_config() -> dict:
    return {"sigma_data": SIGMA_DATA, "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "rho": RHO, "num_levels": 40,
            "teacher_steps": 39, "solver": "heun", "ema_decay": 0.999, "denoising_weight": 1.0,
            "adaptive_weight": True, "p_mean": -1.2, "p_std": 1.2, "teacher_workdir": ""}


def sampler_defaults() -> dict:
    return {"steps": 1, "sigmas": (), "gamma": 0.0, "temperature": 1.0}


def loss(network: Network, x1: jax.Array, key: jax.Array, *, mask: jax.Array | None, cond: Any, config: Any,
         noise_mean: jax.Array | None = None, context: TrainingContext = TrainingContext()
         ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The CTM loss (``ctm_loss``, ``denoising_loss``, ``denoising_balance``, ``jump_fraction``)."""
    context.require("ctm", "target", "teacher", "frozen")
    return ctm_loss(ctm_denoiser(network, config), x1, key, frozen=ctm_denoiser(context.frozen, config),
                    target=ctm_denoiser(context.target, config), teacher=edm_denoiser(context.teacher, config),
                    mask=mask, cond=cond, num_levels=config.num_levels, teacher_steps=config.teacher_steps,
                    solver=config.solver,
                    sigma_min=config.sigma_min, sigma_max=config.sigma_max, rho=config.rho,
                    denoising_weight=config.denoising_weight, adaptive_weight=config.adaptive_weight,
                    p_mean=config.p_mean, p_std=config.p_std, sigma_data=config.sigma_data, noise_mean=noise_mean)


def sample(network: Network, key: jax.Array, shape: tuple[int, ...], *, cond: Any, config: Any,
           uncond: Any = None, guidance_scale: jax.Array | float | None = None, noise_mean: jax.Array | None = None,
           steps: int, sigmas: tuple[float, ...], gamma: float, temperature: float) -> jax.Array:
    """A sample in ``evaluations(steps=steps, sigmas=sigmas)`` jumps of G."""
    trajectory = guided(ctm_trajectory(network, config), uncond, guidance_scale)
    return sample_gamma(trajectory, key, tuple(shape), sigmas=consistency_levels(config, steps, tuple(sigmas)),
                        gamma=gamma, cond=cond, temperature=temperature, noise_mean=noise_mean,
                        **level_options(config))


OBJECTIVE = register(Objective("ctm", default_config, sampler_defaults, loss, sample, consistency_sampling.evaluations,
                               needs=frozenset({"target", "teacher", "frozen"}), teacher="edm", time_inputs=2))
