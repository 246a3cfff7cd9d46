"""Pre-LN transformer encoder with rotary self-attention (the text encoder of Matcha-TTS style
models, the transformer blocks of the 1D U-Net decoder, and UniVoice).

Block: ``x + MHSA(LN(x))`` then ``x + FFN(LN(x))``, built from the Conformer's
``RotarySelfAttention`` and ``FeedForward`` (each carries its own pre-LN). The stack ends with a
LayerNorm. Padding-safe like the Conformer: attention ignores padded keys and everything else is
per frame, so outputs at valid frames never depend on what the padding holds; padded output
frames are zero.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.nn.feed_forward import FeedForward
from jaxspeech.nn.self_attention import RotarySelfAttention


class TransformerBlock(nnx.Module):
    """x + MHSA(LN(x)) -> x + FFN(LN(x)). __call__(x [B,T,D], mask [B,T] bool, *, rngs) -> [B,T,D].

    The residual stream is returned unnormalised and unmasked (a stack masks once at the end).
    """

    def __init__(self, d_model: int, num_heads: int, *, ff_mult: int, dropout: float, rngs: nnx.Rngs):
        self.attn = RotarySelfAttention(d_model, num_heads, dropout, rngs=rngs)
        self.ffn = FeedForward(d_model, ff_mult, dropout, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        x = x + self.attn(x, mask, rngs=rngs)
        return x + self.ffn(x, rngs=rngs)


class Transformer(nnx.Module):
    """``num_layers`` TransformerBlocks and a final LayerNorm.

    __call__(x [B,T,D], mask [B,T] bool, *, rngs) -> [B,T,D], zero at padded frames.
    """

    def __init__(
        self, d_model: int, num_layers: int, num_heads: int, *, ff_mult: int, dropout: float, rngs: nnx.Rngs
    ):
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.blocks = nnx.List(
            [
                TransformerBlock(d_model, num_heads, ff_mult=ff_mult, dropout=dropout, rngs=rngs)
                for _ in range(num_layers)
            ]
        )
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        chex.assert_rank([x, mask], [3, 2])
        chex.assert_equal_shape_prefix([x, mask], 2)
        mask = mask.astype(bool)
        # Zero the padding first: NaN there would otherwise reach parameter gradients through 0 * NaN.
        x = jnp.where(mask[..., None], x, 0.0)
        for block in self.blocks:
            x = block(x, mask, rngs=rngs)
        return jnp.where(mask[..., None], self.norm(x), 0.0)
