"""Convolutional 4x time subsampling in front of speech encoders (Conformer, Gulati et al. 2020)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx


def conv_output_length(length, *, kernel: int = 3, stride: int = 2):
    """Output length of a VALID (unpadded) convolution; works on ints and integer arrays.

    Negative results (inputs shorter than the kernel) are clipped to 0.
    """
    out = (length - kernel) // stride + 1
    return max(out, 0) if isinstance(out, int) else jnp.maximum(out, 0)


def subsampled_length(length):
    """Frames left by two 3x3 stride-2 VALID convolutions: ((T - 1) // 2 - 1) // 2 for T >= 3."""
    return conv_output_length(conv_output_length(length))


class ConvSubsampling(nnx.Module):
    """Two 3x3 stride-2 Conv2d + SiLU over [B,T,F,1], then Linear to d_model.

    Convolutions are VALID, so output frame t' sees input frames 4t' .. 4t'+6 only; an output frame
    is marked valid iff its whole receptive field lies inside the utterance, which makes the valid
    outputs independent of whatever the padding holds.
    """

    def __init__(self, n_mels: int, d_model: int, *, channels: int, rngs: nnx.Rngs):
        self.n_mels = n_mels
        self.conv1 = nnx.Conv(1, channels, (3, 3), strides=(2, 2), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), strides=(2, 2), padding="VALID", rngs=rngs)
        out_freq = subsampled_length(n_mels)
        if out_freq < 1:
            raise ValueError(f"n_mels={n_mels} is too small for 4x conv subsampling (needs >= 7)")
        self.proj = nnx.Linear(channels * out_freq, d_model, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x: [B,T,F] features, mask: [B,T] bool, right-padded (valid frames first). Returns (y [B,T',D], mask [B,T']), T' = subsampled_length(T).

        Padded output frames are zero.
        """
        chex.assert_rank(x, 3)
        chex.assert_shape(mask, x.shape[:2])
        if x.shape[-1] != self.n_mels:
            raise ValueError(f"expected {self.n_mels} feature bins, got {x.shape[-1]}")
        x = jnp.where(mask[..., None], x, 0.0)[..., None]
        x = jax.nn.silu(self.conv1(x))
        x = jax.nn.silu(self.conv2(x))
        batch, frames, freq, channels = x.shape
        y = self.proj(x.reshape(batch, frames, freq * channels))
        lengths = subsampled_length(jnp.sum(mask, axis=1, dtype=jnp.int32))
        out_mask = jnp.arange(frames)[None, :] < lengths[:, None]
        return jnp.where(out_mask[..., None], y, 0.0), out_mask
