"""Flow-time embeddings for vector-field networks: sinusoidal features and their MLP.

Matcha-TTS (after Grad-TTS / DDPM) embeds t in [0, 1] as ``sin/cos(scale * t * w_i)`` with
``w_i = 10000 ** (-i / (dim/2 - 1))`` and scale 1000, then an MLP to the time-embedding width.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
from flax import nnx


def sinusoidal_embedding(t: jax.Array, dim: int, *, scale: float = 1000.0) -> jax.Array:
    """[sin(scale t w), cos(scale t w)] with w_i = 10000^(-i/(dim/2 - 1)), i < dim/2. t: [B] -> [B,dim] float32."""
    chex.assert_rank(t, 1)
    if dim < 4 or dim % 2:
        raise ValueError(f"sinusoidal embedding needs an even dim >= 4, got {dim}")
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
    angles = scale * t.astype(jnp.float32)[:, None] * freqs
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class TimestepEmbedding(nnx.Module):
    """t [B] -> Linear(SiLU(Linear(sinusoidal(t, sinusoid_dim)))) [B, out_dim] (Matcha's TimestepEmbedding).

    With ``inputs`` > 1 the network reads several times per sample (CTM's levels t and s): t [B, inputs],
    each column's sinusoids concatenated before the first Linear.
    """

    def __init__(self, sinusoid_dim: int, out_dim: int, *, inputs: int = 1, rngs: nnx.Rngs):
        if inputs < 1:
            raise ValueError(f"inputs must be >= 1, got {inputs}")
        self.sinusoid_dim, self.inputs = sinusoid_dim, inputs
        self.hidden = nnx.Linear(inputs * sinusoid_dim, out_dim, rngs=rngs)
        self.out = nnx.Linear(out_dim, out_dim, rngs=rngs)

    def __call__(self, t: jax.Array) -> jax.Array:
        columns = t[:, None] if t.ndim == 1 else t
        if columns.ndim != 2 or columns.shape[1] != self.inputs:
            want = "[B]" if self.inputs == 1 else f"[B, {self.inputs}]"
            raise ValueError(f"this embedding reads {self.inputs} time(s) per sample: t must be {want}, "
                             f"got shape {t.shape}")
        features = [sinusoidal_embedding(columns[:, i], self.sinusoid_dim) for i in range(self.inputs)]
        return self.out(jax.nn.silu(self.hidden(jnp.concatenate(features, axis=-1))))
