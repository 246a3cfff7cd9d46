"""Training state: everything a checkpoint must hold to resume a run exactly."""

from __future__ import annotations

from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """Pure data (no callables), so it jits, shards and checkpoints as a plain pytree.

    step: int32 [] number of updates attempted (skipped non-finite steps count too).
    params: pytree of float32 arrays.
    opt_state: the optimizer's state for `params`.
    rng: typed PRNG key []; the key of step s is `jax.random.fold_in(rng, s)`.
    nonfinite_streak: int32 [] consecutive steps whose loss or gradients were non-finite.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    nonfinite_streak: jax.Array


def create_train_state(
    params: Any, optimizer: optax.GradientTransformation, rng: jax.Array
) -> TrainState:
    """Step-0 state. rng: a typed key (`jax.random.key`); raw uint32 keys are wrapped."""
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
        opt_state=optimizer.init(params),
        rng=rng,
        nonfinite_streak=jnp.zeros((), jnp.int32),
    )
