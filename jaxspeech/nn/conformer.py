"""Conformer blocks (Gulati et al. 2020, "Conformer: Convolution-augmented Transformer for Speech
Recognition"), with rotary position embedding in self-attention.

Every layer is padding-safe: frames are right-padded with ``mask`` [B,T] False, attention ignores
padded keys, the depthwise convolution only ever reads zeros from padding, and normalisation is
per-frame LayerNorm (no batch statistics), so outputs at valid frames do not depend on the padding.

Dropout takes its randomness from an explicit ``nnx.Rngs`` passed at call time (``rngs=None``
means deterministic), so the modules hold parameters only and split cleanly with
``nnx.split(model, nnx.Param)``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.nn.depthwise_conv import ConvModule
from jaxspeech.nn.feed_forward import FeedForward
from jaxspeech.nn.self_attention import RotarySelfAttention


class ConformerBlock(nnx.Module):
    """x + FFN/2 -> x + MHSA -> x + Conv -> x + FFN/2 -> LayerNorm (macaron structure).

    __call__(x [B,T,D], mask [B,T] bool, *, rngs) -> [B,T,D]; padded frames of the output are zero.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        ff_mult: int,
        conv_kernel: int,
        dropout: float,
        rngs: nnx.Rngs,
    ):
        self.ffn1 = FeedForward(d_model, ff_mult, dropout, rngs=rngs)
        self.attn = RotarySelfAttention(d_model, num_heads, dropout, rngs=rngs)
        self.conv = ConvModule(d_model, conv_kernel, dropout, rngs=rngs)
        self.ffn2 = FeedForward(d_model, ff_mult, dropout, rngs=rngs)
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        x = x + 0.5 * self.ffn1(x, rngs=rngs)
        x = x + self.attn(x, mask, rngs=rngs)
        x = x + self.conv(x, mask, rngs=rngs)
        x = x + 0.5 * self.ffn2(x, rngs=rngs)
        return jnp.where(mask[..., None], self.norm(x), 0.0)


class ConformerEncoder(nnx.Module):
    """A stack of ``num_layers`` ConformerBlocks. __call__(x [B,T,D], mask [B,T], *, rngs) -> [B,T,D]."""

    def __init__(
        self,
        d_model: int,
        num_layers: int,
        num_heads: int,
        *,
        ff_mult: int,
        conv_kernel: int,
        dropout: float,
        rngs: nnx.Rngs,
    ):
        self.blocks = nnx.List(
            [
                ConformerBlock(
                    d_model, num_heads, ff_mult=ff_mult, conv_kernel=conv_kernel, dropout=dropout, rngs=rngs
                )
                for _ in range(num_layers)
            ]
        )

    def __call__(self, x: jax.Array, mask: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        chex.assert_rank(x, 3)
        chex.assert_shape(mask, x.shape[:2])
        for block in self.blocks:
            x = block(x, mask, rngs=rngs)
        return x
