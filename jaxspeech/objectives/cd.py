"""Consistency distillation (Song et al. 2023; CoMoSpeech, Ye et al. 2023) as an objective: the network,
initialised from an EDM teacher, learns under the consistency parameterisation to map every point of
the teacher's ODE trajectories to their end, against a moving-average target one teacher step further
down; sampled in one or a few steps.

Config (``config.model.decoder.cd``): ``sigma_data``, ``sigma_min``, ``sigma_max``, ``rho`` (EDM's),
``num_levels`` 50, ``solver`` "euler", ``ema_decay`` 0.95 (CoMoSpeech's), ``distance`` "l2" (masked
mean squared error, CoMoSpeech's) or "pseudo_huber" with ``huber_scale``, ``teacher_workdir`` (the EDM
run). Sampler options: ``objectives.consistency_sampling``.
"""

from __future__ import annotations

from typing import Any

import jax

from jaxspeech.losses.consistency import HUBER_SCALE, cd_loss
from jaxspeech.noise_levels import RHO, SIGMA_DATA, SIGMA_MAX, SIGMA_MIN
from jaxspeech.objectives import Network, Objective, TrainingContext, consistency_sampling, register
from jaxspeech.objectives.parameterisation import consistency_function, edm_denoiser

DISTANCES = ("l2", "pseudo_huber")


def default_config() -> dict:
    return {"sigma_data": SIGMA_DATA, "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "rho": RHO, "num_levels": 50,
            "solver": "euler", "ema_decay": 0.95, "distance": "l2", "huber_scale": HUBER_SCALE,
            "teacher_workdir": ""}


def loss(network: Network, x1: jax.Array, key: jax.Array, *, mask: jax.Array | None, cond: Any, config: Any,
         noise_mean: jax.Array | None = None, context: TrainingContext = TrainingContext()
         ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The CD loss against ``context.target`` after one step of ``context.teacher`` (``cd_loss``)."""
    context.require("cd", "target", "teacher")
    if config.distance not in DISTANCES:
        raise ValueError(f"unknown cd distance {config.distance!r}; choose one of {list(DISTANCES)}")
    return cd_loss(consistency_function(network, config), x1, key,
                   target=consistency_function(context.target, config),
                   teacher=edm_denoiser(context.teacher, config), mask=mask, cond=cond, num_levels=config.num_levels,
                   solver=config.solver, sigma_min=config.sigma_min, sigma_max=config.sigma_max, rho=config.rho,
                   huber_scale=config.huber_scale if config.distance == "pseudo_huber" else None,
                   noise_mean=noise_mean)


OBJECTIVE = register(Objective("cd", default_config, consistency_sampling.sampler_defaults, loss,
                               consistency_sampling.sample, consistency_sampling.evaluations,
                               needs=frozenset({"target", "teacher"}), teacher="edm"))
