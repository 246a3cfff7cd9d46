"""Pre-LN multi-head self-attention with rotary position embedding (RoPE) and a key padding mask,
through the attention dispatch (``jaxspeech.nn.attention``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.nn.attention import MaskSpec, attention, rotary_embedding
from jaxspeech.nn.dropout import dropout


class RotarySelfAttention(nnx.Module):
    """Pre-LN multi-head self-attention with RoPE on queries and keys and a key padding mask."""

    def __init__(self, d_model: int, num_heads: int, dropout: float, *, rngs: nnx.Rngs):
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if (d_model // num_heads) % 2:
            raise ValueError(f"head dim d_model/num_heads={d_model // num_heads} must be even for RoPE")
        self.num_heads = num_heads
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.query = nnx.Linear(d_model, d_model, rngs=rngs)
        self.key = nnx.Linear(d_model, d_model, rngs=rngs)
        self.value = nnx.Linear(d_model, d_model, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, rngs=rngs)
        self.drop = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, mask: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        batch, frames, d_model = x.shape
        h = self.norm(x)

        def heads(layer):
            return layer(h).reshape(batch, frames, self.num_heads, d_model // self.num_heads)

        positions = jnp.arange(frames)  # right padding: valid frames keep the same positions
        q = rotary_embedding(heads(self.query), positions)
        k = rotary_embedding(heads(self.key), positions)
        y = attention(q, k, heads(self.value), MaskSpec(key_mask=mask))
        return dropout(self.drop, self.out(y.reshape(batch, frames, d_model)), rngs)
