"""Gradual magnitude pruning as an optax transformation (Zhu & Gupta 2017; SparseML's GMP).

`gradual_magnitude_pruning(inner, schedule)` wraps a whole optimizer. Its state holds one bool
mask per prunable parameter (None elsewhere). At each pruning step of the schedule the masks are
recomputed from the current weights: exactly round(s * n) weights are pruned, the smallest in
magnitude, ranked per layer (each parameter array on its own) or globally (all prunable weights
together). Weights pruned earlier rank below every kept weight, so masks only ever shrink.
On every step the gradients of pruned weights are zeroed before the inner optimizer sees them,
and the emitted update is the inner update for kept weights and -w for pruned ones, so that
`optax.apply_updates` leaves pruned weights exactly 0 (w + (-w) is exactly 0 in floating
point) without a separate masking pass.

Because the update depends on the weights, `update` needs `params`, and the transformation
must be the last one applied (outermost, or last in an `optax.chain`): anything that rescales
its output would stop pruned weights landing on 0.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxspeech.sparsity.schedules import PruningSchedule, cubic_sparsity, is_pruning_step

Prunable = Callable[[str, jax.Array], bool]


class PruningState(NamedTuple):
    """count: int32 [] optimizer updates seen; masks: bool arrays like params (True = kept), None
    at parameters that are not prunable; inner_state: the wrapped optimizer's state."""

    count: jax.Array
    masks: Any
    inner_state: optax.OptState


def param_path(path: tuple) -> str:
    """'/'-joined pytree keys; the `.value` attribute of NNX variables is left out ('lin/kernel')."""
    names = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            names.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            names.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            if key.name != "value":
                names.append(key.name)
        elif isinstance(key, jax.tree_util.FlattenedIndexKey):
            names.append(str(key.key))
        else:
            names.append(str(key))
    return "/".join(names)


def default_prunable(path: str, param: jax.Array) -> bool:
    """Kernels: floating arrays of rank >= 2 whose path does not name an embedding table.

    Rank excludes biases and norm scales; embeddings (token and positional) are 2-D but are
    lookups whose rows are all needed, so they are kept dense.
    """
    return (
        param.ndim >= 2
        and jnp.issubdtype(param.dtype, jnp.floating)
        and re.search("embed", path, re.IGNORECASE) is None
    )


def _as_predicate(prunable: Prunable | str) -> Prunable:
    if isinstance(prunable, str):
        pattern = re.compile(prunable)
        return lambda path, param: pattern.search(path) is not None
    if callable(prunable):
        return prunable
    raise ValueError(
        f"prunable must be a predicate (path, param) -> bool or a regex string, got {prunable!r}"
    )


def _initial_masks(params: Any, prunable: Prunable) -> Any:
    chosen = []

    def mask_for(path, param):
        name = param_path(path)
        if not prunable(name, param):
            return None
        if not (jnp.issubdtype(param.dtype, jnp.floating) and param.ndim >= 1):
            raise ValueError(
                f"prunable parameter {name!r} must be a floating array, got {param.dtype}{param.shape}"
            )
        chosen.append(name)
        return jnp.ones(param.shape, bool)

    masks = jax.tree_util.tree_map_with_path(mask_for, params)
    if not chosen:
        paths = [param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
        raise ValueError(f"no parameter is prunable; parameter paths: {paths}")
    return masks


def _keep_largest(scores: jax.Array, num_pruned: jax.Array) -> jax.Array:
    """bool [n]: False at the `num_pruned` lowest scores (ties broken by position)."""
    order = jnp.argsort(scores, stable=True)
    ranks = jnp.zeros(scores.shape, jnp.int32).at[order].set(jnp.arange(scores.size, dtype=jnp.int32))
    return ranks >= num_pruned


def _num_pruned(sparsity: jax.Array, size: int) -> jax.Array:
    return jnp.round(sparsity * size).astype(jnp.int32)


def _magnitude_masks(params: Any, masks: Any, sparsity: jax.Array, scope: str) -> Any:
    # Already-pruned weights score -1 < |w|, so they stay pruned and masks only shrink.
    scores = jax.tree.map(
        lambda p, m: None if m is None else jnp.where(m, jnp.abs(p), -1.0).astype(jnp.float32).ravel(),
        params,
        masks,
    )
    flat_scores, treedef = jax.tree.flatten(scores)
    if scope == "layer":
        flat_keep = [_keep_largest(s, _num_pruned(sparsity, s.size)) for s in flat_scores]
    else:
        every = jnp.concatenate(flat_scores)
        keep = _keep_largest(every, _num_pruned(sparsity, every.size))
        flat_keep = jnp.split(keep, np.cumsum([s.size for s in flat_scores[:-1]]).tolist())
    keep = jax.tree.unflatten(treedef, flat_keep)
    return jax.tree.map(lambda m, k: k.reshape(m.shape), masks, keep)


def gradual_magnitude_pruning(
    inner: optax.GradientTransformation,
    schedule: PruningSchedule,
    *,
    scope: Literal["layer", "global"] = "layer",
    prunable: Prunable | str = default_prunable,
) -> optax.GradientTransformationExtraArgs:
    """Wraps `inner` so that weights are pruned by magnitude following `schedule`.

    scope: "layer" prunes round(s * n) of each prunable array (a stacked [layers, ...] array is
    one unit), "global" ranks all prunable weights together. prunable: a predicate
    `(path, param) -> bool` over `param_path` strings, or a regex searched in the path.
    `update(grads, state, params)` requires params. Steps count calls to `update`.
    """
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    if not isinstance(schedule, PruningSchedule):
        raise ValueError(
            f"schedule must be a PruningSchedule (see pruning_schedule), got {type(schedule).__name__}"
        )
    predicate = _as_predicate(prunable)
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        return PruningState(
            count=jnp.zeros([], jnp.int32),
            masks=_initial_masks(params, predicate),
            inner_state=inner.init(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("gradual_magnitude_pruning needs params: call update(grads, state, params)")
        masks = jax.lax.cond(
            is_pruning_step(schedule, state.count),
            lambda: _magnitude_masks(params, state.masks, cubic_sparsity(schedule, state.count), scope),
            lambda: state.masks,
        )
        # Pruned weights get no gradient, so the inner moments do not drift on weights that
        # will never come back.
        grads = jax.tree.map(lambda g, m: g if m is None else jnp.where(m, g, 0), updates, masks)
        inner_updates, inner_state = inner.update(grads, state.inner_state, params, **extra_args)
        updates = jax.tree.map(
            lambda u, p, m: u if m is None else jnp.where(m, u, -p.astype(u.dtype)),
            inner_updates,
            params,
            masks,
        )
        count = optax.safe_int32_increment(state.count)
        return updates, PruningState(count=count, masks=masks, inner_state=inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def pruning_masks(opt_state: optax.OptState) -> Any:
    """The masks held by the one `gradual_magnitude_pruning` state inside `opt_state` (any nesting)."""
    found = [
        leaf
        for leaf in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, PruningState))
        if isinstance(leaf, PruningState)
    ]
    if len(found) != 1:
        raise ValueError(
            f"expected one gradual_magnitude_pruning state in the optimizer state, found {len(found)}"
        )
    return found[0].masks


def apply_masks(params: Any, opt_state: optax.OptState) -> Any:
    """params with the weights pruned in `opt_state` set to 0 (e.g. after restoring dense weights)."""
    masks = pruning_masks(opt_state)
    return jax.tree.map(lambda p, m: p if m is None else jnp.where(m, p, jnp.zeros_like(p)), params, masks)


def sparsity_of(params: Any, masks: Any) -> dict[str, jax.Array]:
    """Fraction of exactly-zero weights: per prunable parameter (keyed by `param_path`) and
    "global" over all of them. Parameters whose mask is None are not counted. float32 scalars."""
    zeros, sizes, report = 0, 0, {}

    def count(path, p, m):
        nonlocal zeros, sizes
        if m is None:
            return
        num_zero = jnp.sum(p == 0, dtype=jnp.int32)
        report[param_path(path)] = num_zero.astype(jnp.float32) / p.size
        zeros, sizes = zeros + num_zero, sizes + p.size

    jax.tree_util.tree_map_with_path(count, params, masks)
    if not report:
        raise ValueError("masks select no parameter")
    report["global"] = jnp.asarray(zeros, jnp.float32) / sizes
    return report
