"""The transformer block of Matcha-TTS's U-Net decoder: diffusers' ``BasicTransformerBlock`` with a
SnakeBeta feed-forward.

Block: ``x + Attn(LN(x))`` then ``x + FF(LN(x))``. Attention has no positions, queries/keys/values
without bias and an inner width of num_heads x head_dim (Matcha: 2 x 64 inside 256 channels); FF is
Linear -> SnakeBeta -> dropout -> Linear. LayerNorm epsilon 1e-5 (torch's). Padded keys are
masked out (Matcha passes its 0/1 frame mask as an *additive* bias, which leaves padded keys
e^-1 of a valid key's weight: the two agree exactly when a row has no padding).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.nn.attention import MaskSpec, attention
from jaxspeech.nn.dropout import dropout

EPSILON = 1e-5  # torch.nn.LayerNorm
_NO_DIV_BY_ZERO = 1e-9  # Matcha's SnakeBeta


def snake_beta(x: jax.Array, log_alpha: jax.Array, log_beta: jax.Array) -> jax.Array:
    """SnakeBeta (BigVGAN; Ziyin et al. 2020's Snake with a separate magnitude):
    ``x + sin^2(a x) / b`` with a = exp(log_alpha), b = exp(log_beta) per channel [C]; x: [..., C]."""
    alpha, beta = jnp.exp(log_alpha), jnp.exp(log_beta)
    return x + jnp.square(jnp.sin(x * alpha)) / (beta + _NO_DIV_BY_ZERO)


class SnakeBetaTransformerBlock(nnx.Module):
    """__call__(x [B,T,D], mask [B,T] bool, *, rngs) -> [B,T,D] (padded frames not zeroed)."""

    def __init__(self, d_model: int, num_heads: int, head_dim: int, *, ff_mult: int, dropout: float,
                 rngs: nnx.Rngs):
        inner, hidden = num_heads * head_dim, ff_mult * d_model
        self.num_heads, self.head_dim = num_heads, head_dim
        self.attention_norm = nnx.LayerNorm(d_model, epsilon=EPSILON, rngs=rngs)
        self.query, self.key, self.value = (nnx.Linear(d_model, inner, use_bias=False, rngs=rngs) for _ in range(3))
        self.out = nnx.Linear(inner, d_model, rngs=rngs)
        self.ff_norm = nnx.LayerNorm(d_model, epsilon=EPSILON, rngs=rngs)
        self.ff_in = nnx.Linear(d_model, hidden, rngs=rngs)
        self.log_alpha = nnx.Param(jnp.zeros((hidden,)))
        self.log_beta = nnx.Param(jnp.zeros((hidden,)))
        self.ff_out = nnx.Linear(hidden, d_model, rngs=rngs)
        self.drop = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, mask: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        batch, frames, _ = x.shape
        h = self.attention_norm(x)

        def heads(layer):
            return layer(h).reshape(batch, frames, self.num_heads, self.head_dim)

        y = attention(heads(self.query), heads(self.key), heads(self.value), MaskSpec(key_mask=mask))
        x = x + dropout(self.drop, self.out(y.reshape(batch, frames, -1)), rngs)
        h = snake_beta(self.ff_in(self.ff_norm(x)), self.log_alpha[...], self.log_beta[...])
        return x + self.ff_out(dropout(self.drop, h, rngs))
