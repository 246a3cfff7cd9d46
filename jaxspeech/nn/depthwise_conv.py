"""Depthwise convolution along time, and the blocks built on it: the Conformer's convolution module and the 1-D
ConvNeXt block (Vocos, F5-TTS's text refinement). Padding-safe: the convolution only ever reads zeros from padded
frames."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.nn.dropout import dropout


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
        return dropout(self.drop, self.pointwise_out(h), rngs)


class ConvNeXtBlock(nnx.Module):
    """x + gamma * Linear(GELU(Linear(LayerNorm(depthwise_conv(x))))), Liu et al. 2022 in 1D (Vocos; the
    exact, erf GELU, as torch's ``nn.GELU`` that Vocos checkpoints were trained with)."""

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int, layer_scale: float, *, rngs: nnx.Rngs):
        self.depthwise_kernel = nnx.Param(
            nnx.initializers.lecun_normal()(rngs.params(), (kernel_size, 1, dim))[:, 0]
        )
        self.depthwise_bias = nnx.Param(jnp.zeros((dim,)))
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.up = nnx.Linear(dim, intermediate_dim, rngs=rngs)
        self.down = nnx.Linear(intermediate_dim, dim, rngs=rngs)
        self.gamma = nnx.Param(jnp.full((dim,), layer_scale, jnp.float32))  # not weak-typed: one jit signature

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        # Zero padding before the frame-mixing convolution: a valid frame near the end then sees
        # the zeros that SAME padding gives the unpadded sequence.
        h = depthwise_conv1d(jnp.where(mask[..., None], x, 0.0), self.depthwise_kernel[...])
        h = self.down(jax.nn.gelu(self.up(self.norm(h + self.depthwise_bias[...])), approximate=False))
        return x + self.gamma[...] * h
