"""A per-token flow-matching head: an MLP over one continuous vector conditioned on a hidden state and the
flow time (MAR's SimpleMLPAdaLN, Li et al. 2024; the Flow-Omni / pocket-tts per-frame head).

    h = Linear(x_t);  c = t_embedding(t) + Linear(z)
    per block: h <- h + gate * MLP(LN(h) * (1 + scale) + shift),  (shift, scale, gate) = Linear(SiLU(c))
    out = Linear(LN(h) * (1 + scale) + shift)

The modulations and the output start at zero, so every block starts as the identity and the untrained
velocity is 0. ``__call__(x_t [N, F], t [N], z [N, D]) -> [N, F]``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.nn.dit import modulate
from jaxspeech.nn.timestep import TimestepEmbedding


def _zero_linear(d_in: int, d_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    zeros = nnx.initializers.zeros
    return nnx.Linear(d_in, d_out, kernel_init=zeros, bias_init=zeros, rngs=rngs)


class FlowHeadBlock(nnx.Module):
    def __init__(self, width: int, *, rngs: nnx.Rngs):
        self.modulation = _zero_linear(width, 3 * width, rngs)
        self.hidden = nnx.Linear(width, width, rngs=rngs)
        self.out = nnx.Linear(width, width, rngs=rngs)

    def __call__(self, h: jax.Array, c: jax.Array) -> jax.Array:
        shift, scale, gate = jnp.split(self.modulation(jax.nn.silu(c)), 3, axis=-1)
        x = modulate(h[:, None], shift, scale)[:, 0]
        return h + gate * self.out(jax.nn.silu(self.hidden(x)))


class FlowHead(nnx.Module):
    """Velocity of one frame [N, F] from its noisy value, the flow time and the conditioning state [N, D]."""

    def __init__(self, features: int, cond_dim: int, *, width: int, blocks: int, time_sinusoid_dim: int = 256,
                 rngs: nnx.Rngs):  # fmt: skip
        if blocks < 1:
            raise ValueError(f"a flow head needs at least one block, got {blocks}")
        self.input = nnx.Linear(features, width, rngs=rngs)
        self.time = TimestepEmbedding(time_sinusoid_dim, width, rngs=rngs)
        self.cond = nnx.Linear(cond_dim, width, rngs=rngs)
        self.blocks = nnx.List([FlowHeadBlock(width, rngs=rngs) for _ in range(blocks)])
        self.final_modulation = _zero_linear(width, 2 * width, rngs)
        self.final = _zero_linear(width, features, rngs)

    def __call__(self, x_t: jax.Array, t: jax.Array, z: jax.Array) -> jax.Array:
        chex.assert_rank([x_t, t, z], [2, 1, 2])
        chex.assert_equal_shape_prefix([x_t, t, z], 1)
        c = self.time(t) + self.cond(z)
        h = self.input(x_t)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = jnp.split(self.final_modulation(jax.nn.silu(c)), 2, axis=-1)
        return self.final(modulate(h[:, None], shift, scale)[:, 0]).astype(jnp.float32)
