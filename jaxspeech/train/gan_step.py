"""The adversarial train step: a discriminator update, then a generator update against the
updated discriminator (HiFi-GAN's order), in one pure function.

Losses take the other network's params explicitly:
``discriminator_loss(d_params, g_params, batch, key) -> (loss, metrics)`` and
``generator_loss(g_params, d_params, batch, key) -> (loss, metrics)``. Each network keeps its own
:class:`TrainState` (params, optimizer state, step, rng, optional moving average) and is updated by
:func:`make_train_step` with the other's params fixed, so gradient accumulation, mixed precision
(the fixed params are cast too) and non-finite skipping work per network as for any model. The
generator step recomputes the generator's output that the discriminator step saw (same params,
same key): one extra generator forward pass per step, in exchange for two independent steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jaxspeech.train.mesh import ShardingRules, batch_sharding, replicated
from jaxspeech.train.state import TrainState
from jaxspeech.train.step import cast_floating, make_train_step, place_state, rules_from_config, train_state_shardings

GanLossFn = Callable[[Any, Any, Mapping[str, jax.Array], jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]


@flax.struct.dataclass
class GanState:
    """The two networks' states; a plain pytree (jit, shard and checkpoint it like a TrainState).

    ``step`` and ``rng`` are the generator's (both networks step together), so the train loop and
    the checkpointer take a GanState wherever they take a TrainState.
    """

    generator: TrainState
    discriminator: TrainState

    @property
    def step(self) -> jax.Array:
        return self.generator.step

    @property
    def rng(self) -> jax.Array:
        return self.generator.rng


def make_gan_train_step(
    generator_loss: GanLossFn,
    discriminator_loss: GanLossFn,
    generator_optimizer: optax.GradientTransformation,
    discriminator_optimizer: optax.GradientTransformation,
    *,
    accum_steps: int = 1,
    compute_dtype: jnp.dtype = jnp.float32,
    generator_ema_decay: float | None = None,
) -> Callable[[GanState, Mapping[str, jax.Array], jax.Array], tuple[GanState, dict[str, jax.Array]]]:
    """Returns the pure ``train_step(state, batch, key) -> (state, metrics)``.

    The discriminator is updated first with the generator's current params; the generator's loss
    then reads the updated discriminator. Both steps see the same key (so a generator with
    dropout or noise produces the same output in both). Metrics: each step's metrics (see
    :func:`make_train_step`) prefixed "generator/" and "discriminator/", plus the train loop's
    "loss" (the generator's) and "nonfinite_streak" (the longer of the two streaks).
    """
    common = dict(accum_steps=accum_steps, compute_dtype=compute_dtype)

    def fixed(params):
        return cast_floating(params, compute_dtype)

    def train_step(state: GanState, batch: Mapping[str, jax.Array], key: jax.Array):
        d_step = make_train_step(lambda d, b, k: discriminator_loss(d, fixed(state.generator.params), b, k),
                                 discriminator_optimizer, **common)  # fmt: skip
        discriminator, d_metrics = d_step(state.discriminator, batch, key)
        g_step = make_train_step(lambda g, b, k: generator_loss(g, fixed(discriminator.params), b, k),
                                 generator_optimizer, ema_decay=generator_ema_decay, **common)  # fmt: skip
        generator, g_metrics = g_step(state.generator, batch, key)
        metrics = {**{f"generator/{n}": v for n, v in g_metrics.items()},
                   **{f"discriminator/{n}": v for n, v in d_metrics.items()},
                   "loss": g_metrics["loss"],
                   "nonfinite_streak": jnp.maximum(g_metrics["nonfinite_streak"],
                                                   d_metrics["nonfinite_streak"])}  # fmt: skip
        return GanState(generator=generator, discriminator=discriminator), metrics

    return train_step


def compile_gan_train_step(train_step, state: GanState, mesh: Mesh, rules: ShardingRules = ()):
    """``compile_train_step`` for a GanState: each network's state sharded by
    ``train_state_shardings`` with ``rules``, the batch by ``batch_sharding``, key and metrics
    replicated, the state donated. Returns (step_fn, state shardings) for ``place_state``."""
    shardings = GanState(generator=train_state_shardings(state.generator, mesh, rules),
                         discriminator=train_state_shardings(state.discriminator, mesh, rules))  # fmt: skip
    rep = replicated(mesh)
    step_fn = jax.jit(train_step, in_shardings=(shardings, batch_sharding(mesh), rep), out_shardings=(shardings, rep),
                      donate_argnums=(0,))  # fmt: skip
    return step_fn, shardings


def compile_recipe_gan_step(generator_loss: GanLossFn, discriminator_loss: GanLossFn,
                            optimizer: optax.GradientTransformation, state: GanState, mesh: Mesh, config: Any):
    """A recipe's adversarial step from its config (``compile_recipe_step``'s counterpart): both
    networks stepped by ``optimizer`` with ``config.train.accum_steps`` and ``compute_dtype``,
    sharded by ``config.mesh.rules``. Returns (step_fn, ``state`` placed on the mesh)."""
    t = config.train
    step = make_gan_train_step(generator_loss, discriminator_loss, optimizer, optimizer, accum_steps=t.accum_steps,
                               compute_dtype=jnp.dtype(t.compute_dtype))
    step_fn, shardings = compile_gan_train_step(step, state, mesh, rules_from_config(config))
    return step_fn, place_state(state, shardings)
