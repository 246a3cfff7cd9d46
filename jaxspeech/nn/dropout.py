"""Dropout with call-time randomness: modules hold parameters only and split cleanly with
``nnx.split(model, nnx.Param)``; ``rngs=None`` means deterministic."""

from __future__ import annotations

import jax
from flax import nnx


def dropout(layer: nnx.Dropout, x: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
    """``layer`` applied with ``rngs``; the identity when ``rngs`` is None."""
    return layer(x, deterministic=rngs is None, rngs=rngs)
