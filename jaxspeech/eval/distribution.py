"""Distances between sample sets: the sliced Wasserstein distance (Rabin et al. 2011; Bonneel et al.
2015), the mean over random unit directions of the 1-D Wasserstein-p distance between the two sets'
projections (sorted projections matched by quantile), to the power 1/p."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def _quantiles(values: jax.Array, levels: jax.Array) -> jax.Array:
    """The empirical quantile function of each row of ``values`` [P, N] at ``levels`` [Q] in (0, 1)."""
    count = values.shape[1]
    index = jnp.clip(jnp.floor(levels * count).astype(jnp.int32), 0, count - 1)
    return jnp.sort(values, axis=1)[:, index]


def sliced_wasserstein(x: jax.Array, y: jax.Array, key: jax.Array, *, projections: int = 256, p: int = 2) -> jax.Array:
    """SW_p(x, y) over ``projections`` random directions. x: [N, D]; y: [M, D] (N and M may differ: the
    1-D distance integrates the difference of the quantile functions over a common grid). Returns []."""
    chex.assert_rank([x, y], 2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape} and {y.shape}")
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    directions = jax.random.normal(key, (projections, x.shape[1]), jnp.float32)
    directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
    grid = max(x.shape[0], y.shape[0])
    levels = (jnp.arange(grid, dtype=jnp.float32) + 0.5) / grid
    gaps = _quantiles(directions @ x.T.astype(jnp.float32), levels) - _quantiles(directions @ y.T.astype(jnp.float32),
                                                                                  levels)
    return jnp.mean(jnp.mean(jnp.abs(gaps) ** p, axis=1)) ** (1.0 / p)
