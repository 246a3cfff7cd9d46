"""Masked convolution stack shared by the text encoder's prenet and the duration and pitch predictors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.nn.dropout import dropout


def masked(x: jax.Array, mask: jax.Array) -> jax.Array:
    """``x`` [B,L,D] with the rows where ``mask`` [B,L] is False set to zero."""
    return jnp.where(mask[..., None], x, jnp.zeros((), x.dtype))


class ConvStack(nnx.Module):
    """[conv(k) -> ReLU -> LayerNorm -> dropout] x layers on masked input [B,L,d_in] -> [B,L,channels]
    (Matcha's prenet and duration predictor body). Convolutions read zeros from padding; output is masked."""

    def __init__(self, d_in: int, channels: int, layers: int, kernel: int, dropout_rate: float, *, rngs: nnx.Rngs):
        if kernel % 2 == 0:
            raise ValueError(f"conv kernel must be odd so the convolution is centred, got {kernel}")
        dims = [d_in] + [channels] * layers
        self.convs = nnx.List([nnx.Conv(a, b, kernel_size=(kernel,), padding="SAME", rngs=rngs)
                               for a, b in zip(dims[:-1], dims[1:])])
        self.norms = nnx.List([nnx.LayerNorm(channels, rngs=rngs) for _ in range(layers)])
        self.drop = nnx.Dropout(dropout_rate)

    def __call__(self, x: jax.Array, mask: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
        for conv, norm in zip(self.convs, self.norms):
            x = dropout(self.drop, norm(jax.nn.relu(conv(masked(x, mask)))), rngs)
        return masked(x, mask)
