"""EDM as an objective (Karras et al. 2022; CoMoSpeech's teacher): the network is EDM-preconditioned into
a denoiser ``D(x, sigma, cond)``, trained with the lognormal, EDM-weighted denoising loss and sampled
by the Euler or Heun probability-flow solver down a Karras grid.

Config (``config.model.decoder.edm``): ``sigma_data`` 0.5, ``sigma_min`` 0.002, ``sigma_max`` 80,
``rho`` 7, ``p_mean`` -1.2, ``p_std`` 1.2 (CoMoSpeech's teacher). Sampler options: ``steps`` (50,
CoMoSpeech's teacher), ``method`` ("euler", theirs; "heun"), ``temperature`` (scale of the Gaussian
part of the start noise, 1 = EDM).
"""

from __future__ import annotations

from typing import Any

import jax

from jaxspeech.losses.edm import edm_loss
from jaxspeech.noise_levels import RHO, SIGMA_DATA, SIGMA_MAX, SIGMA_MIN
from jaxspeech.objectives import Network, Objective, TrainingContext, register
from jaxspeech.objectives.parameterisation import edm_denoiser, guided
from jaxspeech.samplers.edm import edm_evaluations, sample_edm


def default_config() -> dict:
    return {"sigma_data": SIGMA_DATA, "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "rho": RHO, "p_mean": -1.2,
            "p_std": 1.2}


def sampler_defaults() -> dict:
    return {"steps": 50, "method": "euler", "temperature": 1.0}


def loss(network: Network, x1: jax.Array, key: jax.Array, *, mask: jax.Array | None, cond: Any, config: Any,
         noise_mean: jax.Array | None = None, context: TrainingContext = TrainingContext()
         ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The EDM denoising loss of the preconditioned network (``edm_loss``, ``denoising_mse``)."""
    del context
    return edm_loss(edm_denoiser(network, config), x1, key, mask=mask, cond=cond, p_mean=config.p_mean,
                    p_std=config.p_std, sigma_data=config.sigma_data, noise_mean=noise_mean)


def sample(network: Network, key: jax.Array, shape: tuple[int, ...], *, cond: Any, config: Any,
           uncond: Any = None, guidance_scale: jax.Array | float | None = None, noise_mean: jax.Array | None = None,
           steps: int, method: str, temperature: float) -> jax.Array:
    """x at sigma = 0 from ``sigma_max (temperature z + noise_mean)``, ``steps`` solver steps."""
    denoiser = guided(edm_denoiser(network, config), uncond, guidance_scale)
    return sample_edm(denoiser, key, tuple(shape), cond=cond, steps=steps, method=method, sigma_min=config.sigma_min,
                      sigma_max=config.sigma_max, rho=config.rho, temperature=temperature, noise_mean=noise_mean)


def evaluations(*, steps: int, method: str, **_) -> int:
    return edm_evaluations(method, steps)


OBJECTIVE = register(Objective("edm", default_config, sampler_defaults, loss, sample, evaluations))
