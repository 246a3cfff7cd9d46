"""The few-step sampler the consistency objectives (ict, ect, cd) share: one step from sigma_max, or
several with re-noising between them (``samplers.consistency.sample_consistency``).

Sampler options: ``steps`` (1), ``sigmas`` (an explicit decreasing tuple of levels; empty = the top
``steps`` levels of a Karras grid of steps + 1), ``temperature`` (scale of the Gaussian noise, 1 = the
paper's).
"""

from __future__ import annotations

from typing import Any

import jax

from jaxspeech.objectives import Network
from jaxspeech.objectives.parameterisation import consistency_function, consistency_levels, guided, level_options
from jaxspeech.samplers.consistency import sample_consistency


def sampler_defaults() -> dict:
    return {"steps": 1, "sigmas": (), "temperature": 1.0}


def sample(network: Network, key: jax.Array, shape: tuple[int, ...], *, cond: Any, config: Any,
           uncond: Any = None, guidance_scale: jax.Array | float | None = None, noise_mean: jax.Array | None = None,
           steps: int, sigmas: tuple[float, ...], temperature: float) -> jax.Array:
    """A sample in ``evaluations(steps=steps, sigmas=sigmas)`` calls of the consistency function."""
    fn = guided(consistency_function(network, config), uncond, guidance_scale)
    return sample_consistency(fn, key, tuple(shape), sigmas=consistency_levels(config, steps, tuple(sigmas)),
                              cond=cond, temperature=temperature, noise_mean=noise_mean, **level_options(config))


def evaluations(*, steps: int, sigmas: tuple[float, ...] = (), **_) -> int:
    return len(sigmas) if sigmas else steps
