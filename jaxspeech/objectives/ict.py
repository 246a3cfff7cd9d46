"""Improved consistency training (Song & Dhariwal 2023) as an objective: the network under the
consistency parameterisation, trained from scratch with the iCT loss (pseudo-Huber, lognormal grid
indices, the doubling curriculum over the run's ``total_steps``, the same network as its own
stop-gradient target) and sampled in one or a few steps.

Config (``config.model.decoder.ict``): ``sigma_data``, ``sigma_min``, ``sigma_max``, ``rho`` (EDM's),
``s0`` 10, ``s1`` 1280, ``p_mean`` -1.1, ``p_std`` 2.0, ``huber_scale`` 0.00054 (the paper's; None =
squared L2, its ablation), ``lognormal_indices`` True (False = uniform, the other ablation).
Sampler options: ``objectives.consistency_sampling``.
"""

from __future__ import annotations

from typing import Any

import jax

from jaxspeech.losses.consistency import HUBER_SCALE, ict_loss
from jaxspeech.noise_levels import RHO, SIGMA_DATA, SIGMA_MAX, SIGMA_MIN
from jaxspeech.objectives import Network, Objective, TrainingContext, consistency_sampling, register
from jaxspeech.objectives.parameterisation import consistency_function


def default_config() -> dict:
    return {"sigma_data": SIGMA_DATA, "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "rho": RHO, "s0": 10,
            "s1": 1280, "p_mean": -1.1, "p_std": 2.0, "huber_scale": HUBER_SCALE, "lognormal_indices": True}


def loss(network: Network, x1: jax.Array, key: jax.Array, *, mask: jax.Array | None, cond: Any, config: Any,
         noise_mean: jax.Array | None = None, context: TrainingContext = TrainingContext()
         ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The iCT loss at ``context.step`` of ``context.total_steps`` (``ict_loss``, ``grid_size``)."""
    if context.total_steps is None:
        raise ValueError("the ict loss needs context.total_steps (the length of its curriculum)")
    return ict_loss(consistency_function(network, config), x1, key, step=context.step,
                    total_steps=context.total_steps, mask=mask, cond=cond, s0=config.s0, s1=config.s1,
                    sigma_min=config.sigma_min, sigma_max=config.sigma_max, rho=config.rho, p_mean=config.p_mean,
                    p_std=config.p_std, huber_scale=config.huber_scale, lognormal_indices=config.lognormal_indices,
                    noise_mean=noise_mean)


OBJECTIVE = register(Objective("ict", default_config, consistency_sampling.sampler_defaults, loss,
                               consistency_sampling.sample, consistency_sampling.evaluations,
                               needs=frozenset({"step"})))
