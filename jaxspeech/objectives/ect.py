"""Easy consistency tuning (Geng et al. 2024) as an objective: the network, initialised from an EDM
teacher, is tuned under the consistency parameterisation with the ECT loss (continuous r(t) that
approaches t stage by stage, stop-gradient target) and sampled in one or a few steps.

Config (``config.model.decoder.ect``): ``sigma_data``, ``sigma_min``, ``sigma_max``, ``rho`` (EDM's),
``p_mean`` -1.1, ``p_std`` 2.0, ``q`` 2, ``k`` 8, ``b`` 1, ``c`` 0 (L2; > 0 pseudo-Huber),
``steps_per_stage`` (ECT's ``double``), ``teacher_workdir`` (the EDM run it starts from).
Sampler options: ``objectives.consistency_sampling``.
"""

from __future__ import annotations

from typing import Any

import jax

from jaxspeech.losses.consistency import ect_loss
from jaxspeech.noise_levels import RHO, SIGMA_DATA, SIGMA_MAX, SIGMA_MIN
from jaxspeech.objectives import Network, Objective, TrainingContext, consistency_sampling, register
from jaxspeech.objectives.parameterisation import consistency_function


def default_config() -> dict:
    return {"sigma_data": SIGMA_DATA, "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "rho": RHO, "p_mean": -1.1,
            "p_std": 2.0, "q": 2.0, "k": 8.0, "b": 1.0, "c": 0.0, "steps_per_stage": 1000, "teacher_workdir": ""}


def loss(network: Network, x1: jax.Array, key: jax.Array, *, mask: jax.Array | None, cond: Any, config: Any,
         noise_mean: jax.Array | None = None, context: TrainingContext = TrainingContext()
         ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The ECT loss at ``context.step`` (``ect_loss``, ``r_over_t``, ``stage``)."""
    return ect_loss(consistency_function(network, config), x1, key, step=context.step,
                    steps_per_stage=config.steps_per_stage, mask=mask, cond=cond, p_mean=config.p_mean,
                    p_std=config.p_std, q=config.q, k=config.k, b=config.b, c=config.c, noise_mean=noise_mean)


OBJECTIVE = register(Objective("ect", default_config, consistency_sampling.sampler_defaults, loss,
                               consistency_sampling.sample, consistency_sampling.evaluations,
                               needs=frozenset({"step"}), teacher="edm"))
