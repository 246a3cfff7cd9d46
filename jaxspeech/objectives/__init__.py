"""Generative objectives: what a decoder network ``net(x, time, cond) -> output`` is trained and
sampled with, by name (``config.model.decoder.objective``).

An :class:`Objective` owns the network's parameterisation (a velocity for flow matching; EDM
preconditioning or the consistency boundary condition for the objectives that follow), its loss
(from ``jaxspeech.losses``) and its sampler (from ``jaxspeech.samplers``). A model that builds on
an objective never names one: ``get(config.decoder.objective)`` is all it needs, so a new objective
is a new module that calls :func:`register`, with no edit to the encoder or the network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax

from jaxspeech.registry import Registry

Network = Callable[[jax.Array, jax.Array, Any], jax.Array]


class Objective(NamedTuple):
    """A generative objective as pure functions.

    name: registry key.
    default_config: ``() -> dict`` of training hyperparameters (``config.model.decoder.<name>``).
    sampler_defaults: ``() -> dict`` of sampling options (``config.synth.sampler``).
    loss: ``loss(network, x1 [B,...], key, *, mask [B,...] bool, cond, config) -> (scalar, metrics)``.
    sample: ``sample(network, key, shape, *, cond, config, uncond=None, guidance_scale=None,
      **options) -> x [shape]``; ``uncond`` and ``guidance_scale`` turn on classifier-free guidance.
    evaluations: ``evaluations(**options) -> int``: network calls per sample (a CFG call on the
      doubled batch counts once).
    """

    name: str
    default_config: Callable[[], dict]
    sampler_defaults: Callable[[], dict]
    loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
    sample: Callable[..., jax.Array]
    evaluations: Callable[..., int]


_REGISTRY: Registry[Objective] = Registry("objective")


def register(objective: Objective) -> Objective:
    """Adds ``objective`` under its name (a second, different one of the same name is an error)."""
    return _REGISTRY.register(objective.name, objective)


def known() -> list[str]:
    return _REGISTRY.names()


def get(name: str) -> Objective:
    """The objective called ``name``; an unknown name lists the known ones."""
    return _REGISTRY.get(name)


def check_sampler_options(objective: Objective, options: Mapping[str, Any]) -> None:
    """Raises naming the options ``objective``'s sampler does not take."""
    unknown = sorted(set(options) - set(objective.sampler_defaults()))
    if unknown:
        raise ValueError(f"the {objective.name} sampler takes {sorted(objective.sampler_defaults())}, "
                         f"not {unknown}")


from jaxspeech.objectives import flow_matching  # noqa: E402  (registers the built-in objectives)

__all__ = ["Network", "Objective", "check_sampler_options", "flow_matching", "get", "known", "register"]
