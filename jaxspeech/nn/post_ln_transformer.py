"""Post-LN transformer encoder of Glow-TTS with partial rotary positions: Matcha-TTS's text encoder.

Layer: ``x = LN(x + MHSA(x))`` then ``x = LN(x + FFN(x))`` with FFN = conv(k) -> ReLU -> dropout ->
conv(k) over zeroed padding, LayerNorm epsilon 1e-4 (Glow-TTS's channel LayerNorm) and no final
norm. RoPE (half-split layout) rotates the first ``rotary_dims`` channels of each head's queries and
keys and passes the rest through (Matcha: half of each head). Attention ignores padded keys, every
other operation is per frame or reads zeros from padding, so valid outputs never depend on the
padding; padded output frames are zero. Not reproduced: Glow-TTS's dropout on attention weights.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.nn.attention import MaskSpec, attention, rotary_embedding
from jaxspeech.nn.dropout import dropout

EPSILON = 1e-4  # Glow-TTS / Matcha-TTS LayerNorm


def _masked(x: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.where(mask[..., None], x, jnp.zeros((), x.dtype))


def partial_rotary(x: jax.Array, positions: jax.Array, rotary_dims: int) -> jax.Array:
    """RoPE on the first ``rotary_dims`` channels of x [B,T,H,D]; the other channels unchanged."""
    if rotary_dims == x.shape[-1]:
        return rotary_embedding(x, positions)
    return jnp.concatenate([rotary_embedding(x[..., :rotary_dims], positions), x[..., rotary_dims:]], axis=-1)


class PostLNLayer(nnx.Module):
    """One post-LN layer: __call__(x [B,T,D], mask [B,T] bool, rngs) -> [B,T,D] (padded frames not zeroed)."""

    def __init__(self, d_model: int, num_heads: int, *, ff_mult: int, ff_kernel: int, rotary_dims: int,
                 dropout: float, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.rotary_dims = rotary_dims
        self.query, self.key, self.value, self.out = (nnx.Linear(d_model, d_model, rngs=rngs) for _ in range(4))
        self.ff_in = nnx.Conv(d_model, ff_mult * d_model, kernel_size=(ff_kernel,), padding="SAME", rngs=rngs)
        self.ff_out = nnx.Conv(ff_mult * d_model, d_model, kernel_size=(ff_kernel,), padding="SAME", rngs=rngs)
        self.attention_norm = nnx.LayerNorm(d_model, epsilon=EPSILON, rngs=rngs)
        self.ff_norm = nnx.LayerNorm(d_model, epsilon=EPSILON, rngs=rngs)
        self.drop = nnx.Dropout(dropout)

    def self_attention(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        batch, frames, d_model = x.shape

        def heads(layer):
            return layer(x).reshape(batch, frames, self.num_heads, d_model // self.num_heads)

        positions = jnp.arange(frames)
        q = partial_rotary(heads(self.query), positions, self.rotary_dims)
        k = partial_rotary(heads(self.key), positions, self.rotary_dims)
        y = attention(q, k, heads(self.value), MaskSpec(key_mask=mask))
        return self.out(y.reshape(batch, frames, d_model))

    def feed_forward(self, x: jax.Array, mask: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
        h = dropout(self.drop, jax.nn.relu(self.ff_in(_masked(x, mask))), rngs)
        return _masked(self.ff_out(_masked(h, mask)), mask)

    def __call__(self, x: jax.Array, mask: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
        x = self.attention_norm(x + dropout(self.drop, self.self_attention(x, mask), rngs))
        return self.ff_norm(x + dropout(self.drop, self.feed_forward(x, mask, rngs), rngs))


class PostLNTransformer(nnx.Module):
    """``num_layers`` post-LN layers. __call__(x [B,T,D], mask [B,T] bool, *, rngs) -> [B,T,D], zero at padding.

    rotary_dims: channels per head that RoPE rotates (even, at most d_model / num_heads).
    """

    def __init__(self, d_model: int, num_layers: int, num_heads: int, *, ff_mult: int, ff_kernel: int,
                 rotary_dims: int, dropout: float, rngs: nnx.Rngs):
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if rotary_dims % 2 or not 0 < rotary_dims <= d_model // num_heads:
            raise ValueError(f"rotary_dims must be even and in (0, {d_model // num_heads}], got {rotary_dims}")
        if ff_kernel % 2 == 0:
            raise ValueError(f"ff_kernel must be odd so the convolution is centred, got {ff_kernel}")
        self.layers = nnx.List([PostLNLayer(d_model, num_heads, ff_mult=ff_mult, ff_kernel=ff_kernel,
                                            rotary_dims=rotary_dims, dropout=dropout, rngs=rngs)
                                for _ in range(num_layers)])

    def __call__(self, x: jax.Array, mask: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        chex.assert_rank([x, mask], [3, 2])
        chex.assert_equal_shape_prefix([x, mask], 2)
        mask = mask.astype(bool)
        for layer in self.layers:
            x = layer(_masked(x, mask), mask, rngs)
        return _masked(x, mask)
