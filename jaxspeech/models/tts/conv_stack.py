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
    (Matcha's duration predictor body; with ``norm_first`` LayerNorm before ReLU, Matcha's prenet).
    Convolutions read zeros from padding; output is masked."""

    def __init__(self, d_in: int, channels: int, layers: int, kernel: int, dropout_rate: float, *,
                 norm_first: bool = False, epsilon: float = 1e-6, rngs: nnx.Rngs):
        if kernel % 2 == 0:
            raise ValueError(f"conv kernel must be odd so the convolution is centred, got {kernel}")
        dims = [d_in] + [channels] * layers
        self.norm_first = norm_first
        self.convs = nnx.List([nnx.Conv(a, b, kernel_size=(kernel,), padding="SAME", rngs=rngs)
                               for a, b in zip(dims[:-1], dims[1:])])
        self.norms = nnx.List([nnx.LayerNorm(channels, epsilon=epsilon, rngs=rngs) for _ in range(layers)])
        self.drop = nnx.Dropout(dropout_rate)

    def __call__(self, x: jax.Array, mask: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
        for conv, norm in zip(self.convs, self.norms):
            h = conv(masked(x, mask))
            h = jax.nn.relu(norm(h)) if self.norm_first else norm(jax.nn.relu(h))
            x = dropout(self.drop, h, rngs)
        return masked(x, mask)
