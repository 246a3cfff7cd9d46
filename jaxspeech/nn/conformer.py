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

from jaxspeech.nn.attention import MaskSpec, attention, rotary_embedding


def _dropout(layer: nnx.Dropout, x: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
    return layer(x, deterministic=rngs is None, rngs=rngs)


class FeedForward(nnx.Module):
    """Pre-LN FFN: LayerNorm -> Linear(d, ff_mult*d) -> SiLU -> dropout -> Linear(ff_mult*d, d) -> dropout."""

    def __init__(self, d_model: int, ff_mult: int, dropout: float, *, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.up = nnx.Linear(d_model, ff_mult * d_model, rngs=rngs)
        self.down = nnx.Linear(ff_mult * d_model, d_model, rngs=rngs)
        self.drop_hidden = nnx.Dropout(dropout)
        self.drop_out = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        h = _dropout(self.drop_hidden, jax.nn.silu(self.up(self.norm(x))), rngs)
        return _dropout(self.drop_out, self.down(h), rngs)


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
        return _dropout(self.drop, self.out(y.reshape(batch, frames, d_model)), rngs)


def depthwise_conv1d(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """SAME-padded depthwise convolution along time: y[b,t,d] = sum_k x[b,t+k-K//2,d] kernel[k,d].

    x: [B,T,D]; kernel: [K,D] with K odd. Written as K shifted multiply-adds, which XLA fuses into
    one pass on every backend; XLA:CPU's grouped convolution is about 3x slower for Conformer sizes.
    """
    chex.assert_rank([x, kernel], [3, 2])
    taps, frames = kernel.shape[0], x.shape[1]
    half = taps // 2
    padded = jnp.pad(x, ((0, 0), (half, half), (0, 0)))
    return sum(padded[:, k : k + frames, :] * kernel[k] for k in range(taps))


class ConvModule(nnx.Module):
    """LayerNorm -> pointwise (d -> 2d) -> GLU -> depthwise conv -> LayerNorm -> SiLU -> pointwise -> dropout.

    The paper uses BatchNorm after the depthwise conv; LayerNorm is used here because batch
    statistics would mix padded frames and other utterances into each output.
    """

    def __init__(self, d_model: int, kernel_size: int, dropout: float, *, rngs: nnx.Rngs):
        if kernel_size % 2 == 0:
            raise ValueError(f"conv_kernel must be odd so the convolution is centred, got {kernel_size}")
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.pointwise_in = nnx.Linear(d_model, 2 * d_model, rngs=rngs)
        # Same initialisation as nnx.Conv's depthwise kernel (lecun_normal over fan-in = taps).
        self.depthwise_kernel = nnx.Param(
            nnx.initializers.lecun_normal()(rngs.params(), (kernel_size, 1, d_model))[:, 0]
        )
        self.depthwise_bias = nnx.Param(jnp.zeros((d_model,)))
        self.conv_norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.pointwise_out = nnx.Linear(d_model, d_model, rngs=rngs)
        self.drop = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, mask: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        h = jax.nn.glu(self.pointwise_in(self.norm(x)), axis=-1)
        # Zero padding before the only layer that mixes frames, so a valid frame near the end
        # sees the same zeros the SAME padding would give a shorter sequence.
        h = jnp.where(mask[..., None], h, 0.0)
        h = depthwise_conv1d(h, self.depthwise_kernel[...]) + self.depthwise_bias[...]
        h = jax.nn.silu(self.conv_norm(h))
        return _dropout(self.drop, self.pointwise_out(h), rngs)


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
