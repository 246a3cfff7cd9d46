"""Training state: everything a checkpoint must hold to resume a run exactly."""

from __future__ import annotations

from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

NEVER_FORCED = 2**31 - 1  # consecutive non-finite steps after which apply_if_finite would apply one anyway


def skip_nonfinite(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """``optimizer`` under ``optax.apply_if_finite``: a step with non-finite gradients leaves the
    inner state alone and updates by zero; its state counts consecutive such steps
    (``notfinite_count``). It never forces an update through: the train loop stops a run after
    ``max_nonfinite_streak`` instead. ``create_train_state`` and ``make_train_step`` both wrap."""
    return optax.apply_if_finite(optimizer, max_consecutive_errors=NEVER_FORCED)


@flax.struct.dataclass
class TrainState:
    """Pure data (no callables), so it jits, shards and checkpoints as a plain pytree.

    step: int32 [] number of updates attempted (skipped non-finite steps count too).
    params: pytree of float32 arrays.
    opt_state: the optimizer's state for `params`.
    rng: typed PRNG key []; the key of step s is `jax.random.fold_in(rng, s)`.
    ema: None, or an exponential moving average of ``params`` (same tree) that the train step
      updates after every update (``make_train_step(ema_decay=...)``): consistency distillation's
      target network.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    ema: Any = None


def create_train_state(
    params: Any, optimizer: optax.GradientTransformation, rng: jax.Array, *, ema: bool = False
) -> TrainState:
    """Step-0 state. rng: a typed key (`jax.random.key`); raw uint32 keys are wrapped. The optimizer
    state is ``skip_nonfinite(optimizer)``'s, as ``make_train_step`` updates it. ema: start a moving
    average of the params (a copy of them)."""
    if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.wrap_key_data(rng)
    chex.assert_shape(rng, ())
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params has no array leaves")
    non_float32 = {
        str(a.dtype) for a in leaves if jnp.issubdtype(a.dtype, jnp.floating) and a.dtype != jnp.float32
    }
    if non_float32:
        raise ValueError(
            f"params must be float32 (the step casts them for compute), found {sorted(non_float32)}"
        )
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=skip_nonfinite(optimizer).init(params),
        rng=rng,
        ema=jax.tree.map(jnp.copy, params) if ema else None,
    )
