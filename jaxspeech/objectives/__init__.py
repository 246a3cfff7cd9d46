"""Generative objectives: what a decoder network ``net(x, time, cond) -> output`` is trained and
sampled with, by name (``config.model.decoder.objective``).

An :class:`Objective` owns the network's parameterisation (a velocity for flow matching; EDM
preconditioning, the consistency boundary condition or CTM's two-level jump for the others), its loss
(from ``jaxspeech.losses``) and its sampler (from ``jaxspeech.samplers``). A model that builds on
an objective never names one: ``get(config.decoder.objective)`` is all it needs, so a new objective
is a new module that calls :func:`register`, with no edit to the encoder or the network.

Built in: ``flow_matching`` (OT-CFM), ``edm`` (EDM teacher), ``ict`` (improved consistency training),
``ect`` (easy consistency tuning of an EDM teacher), ``cd`` (consistency distillation, CoMoSpeech) and
``ctm`` (consistency trajectory model distilled from an EDM teacher).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax

from jaxspeech.registry import Registry

Network = Callable[[jax.Array, jax.Array, Any], jax.Array]
CONTEXT_FIELDS = ("step", "target", "teacher", "frozen")


class TrainingContext(NamedTuple):
    """What a loss may need beyond the batch (an objective lists the fields it reads in ``needs``).

    step: the training step (int32 [], may be traced) and total_steps (int): curricula (iCT, ECT).
    target: the network with the moving average of the params (CD and CTM targets).
    teacher: a frozen pretrained network, of the objective named by ``Objective.teacher``.
    frozen: the network with its params under stop-gradient (CTM carries estimates through it).
    """

    step: jax.Array | int = 0
    total_steps: int | None = None
    target: Network | None = None
    teacher: Network | None = None
    frozen: Network | None = None

    def require(self, objective: str, *names: str) -> None:
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            raise ValueError(f"the {objective} loss needs {missing} in its TrainingContext")


class Objective(NamedTuple):
    """A generative objective as pure functions.

    name: registry key.
    default_config: ``() -> dict`` of training hyperparameters (``config.model.decoder.<name>``).
    sampler_defaults: ``() -> dict`` of sampling options (``config.synth.sampler``).
    loss: ``loss(network, x1 [B,...], key, *, mask [B,...] bool, cond, config, noise_mean=None,
      context=TrainingContext()) -> (scalar, metrics)``; noise_mean: the mean of the unit noise,
      broadcastable to x1 (Grad-TTS and CoMoSpeech centre it on the text prior; None = 0).
    sample: ``sample(network, key, shape, *, cond, config, uncond=None, guidance_scale=None,
      noise_mean=None, **options) -> x [shape]``; ``uncond`` and ``guidance_scale`` turn on
      classifier-free guidance.
    evaluations: ``evaluations(**options) -> int``: network calls per sample (a CFG call on the
      doubled batch counts once).
    needs: the :class:`TrainingContext` fields the loss reads.
    teacher: the objective a teacher must have been trained with (its params also initialise the
      student), or None.
    time_inputs: noise levels the network reads per sample: ``time`` is [B] for 1, [B, 2] for CTM's
      (t, s).
    """

    name: str
    default_config: Callable[[], dict]
    sampler_defaults: Callable[[], dict]
    loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
    sample: Callable[..., jax.Array]
    evaluations: Callable[..., int]
    needs: frozenset[str] = frozenset()
    teacher: str | None = None
    time_inputs: int = 1


_REGISTRY: Registry[Objective] = Registry("objective")


def training_context(objective: Objective, network_of: Callable[[Any], Network], params: Any, progress: Any = None,
                     *, total_steps: int | None = None, teacher: Network | None = None) -> TrainingContext:
    """The context ``objective``'s loss reads, for a network built from params by ``network_of``.

    progress: a ``train.TrainProgress`` (step, moving average) or None (step 0, and the params stand in
    for their average); the target and frozen networks see their params under stop-gradient. Only the
    networks the objective ``needs`` are built."""
    networks = {}
    if "target" in objective.needs:
        average = params if progress is None or progress.ema is None else progress.ema
        networks["target"] = network_of(jax.lax.stop_gradient(average))
    if "frozen" in objective.needs:
        networks["frozen"] = network_of(jax.lax.stop_gradient(params))
    return TrainingContext(step=0 if progress is None else progress.step, total_steps=total_steps, teacher=teacher,
                           **networks)


def register(objective: Objective) -> Objective:
    """Adds ``objective`` under its name (a second, different one of the same name is an error)."""
    unknown = sorted(set(objective.needs) - set(CONTEXT_FIELDS))
    if unknown:
        raise ValueError(f"objective {objective.name!r} needs unknown context fields {unknown}; "
                         f"known: {list(CONTEXT_FIELDS)}")
    if "teacher" in objective.needs and objective.teacher is None:
        raise ValueError(f"objective {objective.name!r} reads a teacher: name the objective it was trained with")
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


# The built-in objectives register themselves.
from jaxspeech.objectives import cd, ctm, ect, edm, flow_matching, ict  # noqa: E402

__all__ = ["CONTEXT_FIELDS", "Network", "Objective", "TrainingContext", "cd", "check_sampler_options", "ctm", "ect",
           "edm", "flow_matching", "get", "ict", "known", "register", "training_context"]
