"""Diffusion transformer vector field with adaLN-zero conditioning (Peebles & Xie 2023, "Scalable
Diffusion Models with Transformers"; the F5-TTS backbone).

Per block, a conditioning vector c [B,D] (time embedding + e.g. a speaker embedding) gives six
vectors through ``Linear(SiLU(c))``: shift, scale and gate for attention and for the FFN.

    x <- x + gate_a * MHSA(LN(x) * (1 + scale_a) + shift_a)
    x <- x + gate_f * FFN(LN(x) * (1 + scale_f) + shift_f)

with parameter-free LayerNorms. The modulation Linear starts at zero ("adaLN-zero"), so every
block is exactly the identity at initialisation, and the final adaLN + projection also start at
zero, so the untrained field is 0. Attention is the Conformer's RoPE self-attention with a key
padding mask and the FFN its SiLU FFN; everything else is per frame, so valid outputs do not
depend on the padding.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.nn.feed_forward import FeedForward
from jaxspeech.nn.self_attention import RotarySelfAttention
from jaxspeech.nn.timestep import TimestepEmbedding


class _Identity(nnx.Module):
    def __call__(self, x: jax.Array) -> jax.Array:
        return x


def _layer_norm(x: jax.Array, epsilon: float = 1e-6) -> jax.Array:
    """Parameter-free LayerNorm over the last axis (adaLN supplies the affine)."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + epsilon)).astype(x.dtype)


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    """adaLN: LN(x) * (1 + scale) + shift. x: [B,T,D]; shift, scale: [B,D]."""
    return _layer_norm(x) * (1.0 + scale[:, None, :]) + shift[:, None, :]


def _zero_linear(d_in: int, d_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(d_in, d_out, kernel_init=nnx.initializers.zeros, bias_init=nnx.initializers.zeros, rngs=rngs)


class DiTBlock(nnx.Module):
    """adaLN-zero transformer block. __call__(x [B,T,D], c [B,D], mask [B,T] bool, *, rngs) -> [B,T,D]."""

    def __init__(self, d_model: int, num_heads: int, *, ff_mult: int, dropout: float, rngs: nnx.Rngs):
        self.attn = RotarySelfAttention(d_model, num_heads, dropout, rngs=rngs)
        self.ffn = FeedForward(d_model, ff_mult, dropout, rngs=rngs)
        # The sublayers' own pre-LN (with its affine) is replaced by the conditioned LayerNorm
        # applied here, so both read the modulated input unchanged.
        self.attn.norm = _Identity()
        self.ffn.norm = _Identity()
        self.modulation = _zero_linear(d_model, 6 * d_model, rngs)

    def __call__(self, x: jax.Array, c: jax.Array, mask: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = jnp.split(self.modulation(jax.nn.silu(c)), 6, axis=-1)
        x = x + gate_a[:, None, :] * self.attn(modulate(x, shift_a, scale_a), mask, rngs=rngs)
        return x + gate_f[:, None, :] * self.ffn(modulate(x, shift_f, scale_f), rngs=rngs)


class DiT(nnx.Module):
    """DiT vector field.

    __call__(x [B,T,in_features], t [B] (or [B, time_inputs]), cond [B,cond_dim], mask [B,T] bool, *, rngs)
    -> [B,T,out_features].

    ``x`` is what the field reads per frame (for TTS: concat of x_t and the aligned text means
    mu); ``cond`` is a per-utterance vector added to the time embedding (e.g. a speaker
    embedding). Output is zero at padded frames, and everywhere at initialisation.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        cond_dim: int,
        *,
        d_model: int = 256,
        num_layers: int = 6,
        num_heads: int = 4,
        ff_mult: int = 4,
        dropout: float = 0.1,
        time_inputs: int = 1,
        rngs: nnx.Rngs,
    ):
        self.input_proj = nnx.Linear(in_features, d_model, rngs=rngs)
        self.time_embedding = TimestepEmbedding(d_model, d_model, inputs=time_inputs, rngs=rngs)
        self.cond_proj = nnx.Linear(cond_dim, d_model, rngs=rngs)
        self.blocks = nnx.List(
            [DiTBlock(d_model, num_heads, ff_mult=ff_mult, dropout=dropout, rngs=rngs) for _ in range(num_layers)]
        )
        self.final_modulation = _zero_linear(d_model, 2 * d_model, rngs)
        self.final_proj = _zero_linear(d_model, out_features, rngs)

    def __call__(
        self, x: jax.Array, t: jax.Array, cond: jax.Array, mask: jax.Array, *, rngs: nnx.Rngs | None = None
    ) -> jax.Array:
        chex.assert_rank([x, cond, mask], [3, 2, 2])
        chex.assert_equal_shape_prefix([x, mask], 2)
        chex.assert_equal_shape_prefix([x, t, cond], 1)
        mask = mask.astype(bool)
        h = self.input_proj(jnp.where(mask[..., None], x, 0.0))
        c = self.time_embedding(t) + self.cond_proj(cond)
        for block in self.blocks:
            h = block(h, c, mask, rngs=rngs)
        shift, scale = jnp.split(self.final_modulation(jax.nn.silu(c)), 2, axis=-1)
        out = self.final_proj(modulate(h, shift, scale))
        return jnp.where(mask[..., None], out, 0.0)
