"""Flow matching as an objective: the network is a velocity field ``v(x_t, t, cond)``, trained with
conditional flow matching (OT-CFM; ``sigma_min = 0`` is rectified flow) and sampled by integrating
the ODE from noise at t = 0 to data at t = 1 (Euler ... RK4, sway, batched CFG).

Config (``config.model.decoder.flow_matching``): ``sigma_min`` (Matcha 1e-4). Sampler options
(``config.synth.sampler``): ``steps``, ``method``, ``temperature`` (start noise scale; Matcha
0.667), ``sway`` (False, True for F5's s = -1, or a coefficient).
"""

from __future__ import annotations

from typing import Any

import jax

from jaxspeech.losses.flow_matching import conditional_flow_matching
from jaxspeech.noise_levels import unit_noise
from jaxspeech.objectives import Network, Objective, TrainingContext, register
from jaxspeech.samplers.ode import function_evaluations, sample_ode


def default_config() -> dict:
    return {"sigma_min": 1e-4}


def sampler_defaults() -> dict:
    return {"steps": 10, "method": "euler", "temperature": 0.667, "sway": False}


def loss(network: Network, x1: jax.Array, key: jax.Array, *, mask: jax.Array | None, cond: Any, config: Any,
         noise_mean: jax.Array | None = None, context: TrainingContext = TrainingContext()
         ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Conditional flow matching of ``network`` as the velocity, masked MSE (``flow_mse``)."""
    del context
    return conditional_flow_matching(network, x1, key, mask=mask, cond=cond, sigma_min=config.sigma_min,
                                     noise_mean=noise_mean)


def sample(network: Network, key: jax.Array, shape: tuple[int, ...], *, cond: Any, config: Any,
           uncond: Any = None, guidance_scale: jax.Array | float | None = None, noise_mean: jax.Array | None = None,
           steps: int, method: str, temperature: float, sway: bool | float) -> jax.Array:
    """x at t = 1 from ``temperature * normal(key, shape) + noise_mean`` at t = 0."""
    del config
    start = unit_noise(key, tuple(shape), noise_mean=noise_mean, temperature=temperature)
    return sample_ode(network, None, start, cond=cond, steps=steps, method=method, uncond=uncond,
                      guidance_scale=guidance_scale, sway=sway)


def evaluations(*, steps: int, method: str, **_) -> int:
    return function_evaluations(method, steps)


OBJECTIVE = register(Objective("flow_matching", default_config, sampler_defaults, loss, sample, evaluations))
