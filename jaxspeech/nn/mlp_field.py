"""A residual MLP over vectors that reads one or more noise times: the network ``net(x, time, cond)``
of a velocity field, denoiser or trajectory function on low-dimensional data (2-D toys, per-frame
flow heads over a latent), for any objective in ``jaxspeech.objectives``.

x [B, D] -> Linear -> ``num_blocks`` x (x + Linear(SiLU(Linear(LayerNorm(x) + time embedding)))) ->
LayerNorm -> Linear -> [B, D]. The time [B] (or [B, time_inputs]) goes through ``TimestepEmbedding``;
``cond`` [B, cond_dim] (optional) is projected and added to it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.nn.timestep import TimestepEmbedding


class _Block(nnx.Module):
    def __init__(self, width: int, *, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.inner = nnx.Linear(width, 2 * width, rngs=rngs)
        self.outer = nnx.Linear(2 * width, width, rngs=rngs)

    def __call__(self, h: jax.Array, embedding: jax.Array) -> jax.Array:
        return h + self.outer(jax.nn.silu(self.inner(self.norm(h) + embedding)))


class MLPField(nnx.Module):
    """__call__(x [B, features], time [B] or [B, time_inputs], cond [B, cond_dim] or None) -> [B, features]."""

    def __init__(self, features: int, *, width: int = 128, num_blocks: int = 3, time_inputs: int = 1,
                 cond_dim: int = 0, rngs: nnx.Rngs):
        self.input_proj = nnx.Linear(features, width, rngs=rngs)
        self.time_embedding = TimestepEmbedding(width, width, inputs=time_inputs, rngs=rngs)
        self.cond_proj = nnx.Linear(cond_dim, width, rngs=rngs) if cond_dim else None
        self.blocks = nnx.List([_Block(width, rngs=rngs) for _ in range(num_blocks)])
        self.out_norm = nnx.LayerNorm(width, rngs=rngs)
        self.output_proj = nnx.Linear(width, features, rngs=rngs)

    def __call__(self, x: jax.Array, time: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        if x.ndim != 2:
            raise ValueError(f"x must be [B, features], got shape {x.shape}")
        if (cond is None) != (self.cond_proj is None):
            raise ValueError(f"this field was built with cond_dim={0 if self.cond_proj is None else 'set'}: "
                             f"cond must be {'None' if self.cond_proj is None else '[B, cond_dim]'}")
        embedding = self.time_embedding(time)
        if cond is not None:
            embedding = embedding + self.cond_proj(jnp.asarray(cond, jnp.float32))
        h = self.input_proj(x)
        for block in self.blocks:
            h = block(h, embedding)
        return self.output_proj(jax.nn.silu(self.out_norm(h)))
