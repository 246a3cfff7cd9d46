"""The train step: gradient accumulation, mixed precision, non-finite skipping, a moving average of
the params, sharded jit.

A model is just `loss_fn(params, batch, key) -> (loss [], metrics {name: []})`; a loss that depends
on how far training is (a curriculum) or on the moving average (a consistency-distillation target)
takes a fourth argument, :class:`TrainProgress` (``make_train_step(with_progress=True)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh

from jaxspeech.train.mesh import ShardingRules, batch_sharding, param_shardings, replicated
from jaxspeech.train.state import TrainState, skip_nonfinite

LossFn = Callable[[Any, Mapping[str, jax.Array], jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]


class TrainProgress(NamedTuple):
    """What a loss may read of the train state: ``step`` (int32 [], the update being computed) and
    ``ema`` (the params' moving average, cast like the params; None without one)."""

    step: jax.Array
    ema: Any = None


TrainStep = Callable[[TrainState, Mapping[str, jax.Array], jax.Array], tuple[TrainState, dict[str, jax.Array]]]


def cast_floating(tree: Any, dtype: jnp.dtype) -> Any:
    """Casts floating leaves to `dtype`; integer, bool and key leaves are left alone."""

    def cast(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


def split_micro_batches(batch: Mapping[str, Any], accum_steps: int) -> dict[str, jax.Array]:
    """[B, ...] -> [accum_steps, B // accum_steps, ...], micro-batch i = rows i, i+A, i+2A, ...

    Strided rather than contiguous because the batch is sharded over devices along B: every
    device then owns an equal share of every micro-batch, so no micro-batch sits on a subset
    of devices and no resharding is needed.
    """

    def split(x):
        x = jnp.asarray(x)
        if x.ndim == 0 or x.shape[0] % accum_steps:
            raise ValueError(
                f"batch leading dim {x.shape[:1]} is not divisible by accum_steps={accum_steps}"
            )
        micro = x.reshape(x.shape[0] // accum_steps, accum_steps, *x.shape[1:])
        return jnp.swapaxes(micro, 0, 1)

    return {name: split(x) for name, x in batch.items()}


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    accum_steps: int = 1,
    compute_dtype: jnp.dtype = jnp.float32,
    with_progress: bool = False,
    ema_decay: float | None = None,
) -> TrainStep:
    """Returns the pure `train_step(state, batch, key) -> (state, metrics)`.

    batch: dict of arrays [B, ...]; B must be divisible by `accum_steps`. The batch is split
    into `accum_steps` micro-batches (see `split_micro_batches`) run under `lax.scan`; micro-
    batch i gets `fold_in(key, i)`; loss, grads and metrics are averaged, which equals the
    full-batch gradient when the loss is a per-example mean.
    Mixed precision: floating params and batch arrays are cast to `compute_dtype` for the
    forward pass only; params, loss and grads stay float32.
    A non-finite loss or gradient skips the update (:func:`skip_nonfinite`: params and the inner
    optimizer state stay unchanged), still advances `step`, and the optimizer state counts the
    streak (reset to 0 by a finite step). `optimizer` is the unwrapped transform: the state must
    come from ``create_train_state`` with the same one.
    metrics: the loss_fn's metrics plus `loss`, `grad_norm`, `skipped` (0./1.) and
    `nonfinite_streak`; all scalars.
    """
    if not (isinstance(accum_steps, int) and accum_steps >= 1):
        raise ValueError(f"accum_steps must be a positive int, got {accum_steps!r}")
    if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")

    def micro_loss(params, micro_batch, key, progress):
        args = (cast_floating(params, compute_dtype), cast_floating(micro_batch, compute_dtype), key)
        loss, metrics = loss_fn(*args, progress) if with_progress else loss_fn(*args)
        chex.assert_shape(loss, ())
        metrics = {name: jnp.asarray(value, jnp.float32) for name, value in metrics.items()}
        for name, value in metrics.items():
            if value.shape != ():
                raise ValueError(f"loss_fn metric {name!r} must be a scalar, got shape {value.shape}")
        return loss.astype(jnp.float32), metrics

    loss_and_grad = jax.value_and_grad(micro_loss, has_aux=True)
    optimizer = skip_nonfinite(optimizer)

    def train_step(state: TrainState, batch: Mapping[str, Any], key: jax.Array):
        if (state.ema is None) != (ema_decay is None):
            raise ValueError("the state's moving average and make_train_step's ema_decay go together: "
                             f"state.ema is {'None' if state.ema is None else 'set'}, ema_decay={ema_decay}")
        micro_batches = split_micro_batches(batch, accum_steps)
        progress = TrainProgress(state.step, None if state.ema is None else cast_floating(state.ema, compute_dtype))

        def micro_step(index, micro_batch):
            (loss, metrics), grads = loss_and_grad(state.params, micro_batch, jax.random.fold_in(key, index),
                                                   progress)
            return loss, metrics, grads

        if accum_steps == 1:
            # Not a one-trip scan: XLA:CPU runs the whole step about 2x slower inside a while
            # loop (measured on the tiny CTC recipe: 400 -> 190 ms per step).
            total = micro_step(0, jax.tree.map(lambda x: x[0], micro_batches))
        else:
            def accumulate(total, indexed_micro_batch):
                return jax.tree.map(jnp.add, total, micro_step(*indexed_micro_batch)), None

            first = jax.tree.map(lambda x: x[0], micro_batches)
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(micro_step, 0, first))
            total, _ = lax.scan(
                accumulate, zeros, (jnp.arange(accum_steps, dtype=jnp.uint32), micro_batches)
            )
        loss, metrics, grads = jax.tree.map(lambda x: x / accum_steps, total)

        # optax.apply_if_finite looks at the gradients only: a non-finite loss makes them non-finite too.
        grads = jax.tree.map(lambda g: jnp.where(jnp.isfinite(loss), g, jnp.nan), grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema
        if ema is not None:
            ema = jax.tree.map(lambda average, p: ema_decay * average + (1.0 - ema_decay) * p, ema, params)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema=ema)
        metrics = {
            **metrics,
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "skipped": (~opt_state.last_finite).astype(jnp.float32),
            "nonfinite_streak": opt_state.notfinite_count,
        }
        return new_state, metrics

    return train_step


def train_state_shardings(state: TrainState, mesh: Mesh, rules: ShardingRules) -> TrainState:
    """A TrainState of NamedShardings: params by `rules`; optimizer leaves follow their param.

    Optax states hold params-shaped subtrees (adam's mu and nu, ...): any opt_state subtree
    with the params' tree structure gets the params' shardings leaf by leaf where shapes match;
    everything else (counts, step, rng, streak, ...) is replicated.
    """
    params_sharding = param_shardings(state.params, rules, mesh)
    params_def = jax.tree.structure(state.params)
    params_leaves = jax.tree.leaves(state.params)
    sharding_leaves = jax.tree.leaves(params_sharding)
    rep = replicated(mesh)

    def mirrors_params(node):
        return jax.tree.structure(node) == params_def

    def opt_sharding(node):
        if not mirrors_params(node):
            return rep
        leaves = jax.tree.leaves(node)
        chosen = [
            sharding if jnp.shape(leaf) == jnp.shape(param) else rep
            for leaf, param, sharding in zip(leaves, params_leaves, sharding_leaves)
        ]
        return jax.tree.unflatten(params_def, chosen)

    return TrainState(
        step=rep,
        params=params_sharding,
        opt_state=jax.tree.map(opt_sharding, state.opt_state, is_leaf=mirrors_params),
        rng=rep,
        ema=None if state.ema is None else params_sharding,
    )


def compile_train_step(
    train_step: TrainStep, state: TrainState, mesh: Mesh, rules: ShardingRules = ()
) -> tuple[TrainStep, TrainState]:
    """jit with shardings: state by `train_state_shardings`, batch by `batch_sharding`, key and
    metrics replicated; the state argument is donated (do not reuse the state passed in).

    state: a TrainState (arrays or ShapeDtypeStructs) giving shapes. Returns (step_fn,
    state_shardings); put a host state on the mesh with `place_state(state, state_shardings)`.
    """
    state_shardings = train_state_shardings(state, mesh, rules)
    rep = replicated(mesh)
    step_fn = jax.jit(
        train_step,
        in_shardings=(state_shardings, batch_sharding(mesh), rep),
        out_shardings=(state_shardings, rep),
        donate_argnums=(0,),
    )
    return step_fn, state_shardings


def place_state(state: TrainState, state_shardings: TrainState) -> TrainState:
    """Puts a host (or single-device) state onto the mesh: each device gets its slice.

    Every process must pass the same values (they do when built from the same seeds).
    Works across processes, where `jax.device_put` of committed arrays does not.
    """

    def place(leaf, sharding):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            # key_data has trailing dims the spec leaves unsplit, so the same sharding fits.
            data = place(jax.random.key_data(leaf), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(place, state, state_shardings)


def rules_from_config(config: Any) -> ShardingRules:
    """``config.mesh.rules`` (``(regex, spec)`` pairs, specs as lists or tuples) as sharding rules."""
    return [(pattern, tuple(spec)) for pattern, spec in config.mesh.rules]


def compile_recipe_step(
    loss_fn: LossFn, optimizer: optax.GradientTransformation, state: TrainState, mesh: Mesh, config: Any, *,
    with_progress: bool = False, ema_decay: float | None = None,
) -> tuple[TrainStep, TrainState]:
    """A recipe's train step from its config: :func:`make_train_step` with ``config.train.accum_steps``
    and ``config.train.compute_dtype`` (and ``with_progress``, ``ema_decay`` as there),
    :func:`compile_train_step` with ``config.mesh.rules`` (``(regex, spec)`` pairs). Returns
    (step_fn, ``state`` placed on the mesh)."""
    step = make_train_step(loss_fn, optimizer, accum_steps=config.train.accum_steps,
                           compute_dtype=jnp.dtype(config.train.compute_dtype), with_progress=with_progress,
                           ema_decay=ema_decay)
    step_fn, shardings = compile_train_step(step, state, mesh, rules_from_config(config))
    return step_fn, place_state(state, shardings)
