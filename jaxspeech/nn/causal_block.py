"""A pre-norm causal decoder block with a fixed-size KV cache, for any decoder-only or encoder-decoder
model: LLaMA-style (RMSNorm, RoPE, grouped-query attention, SwiGLU) or GPT-style (LayerNorm, GELU)
by argument.

Decoding runs inside jit with fixed shapes: the cache holds ``max_len`` slots per row, new keys and
values are written at each row's ``length`` with ``dynamic_update_slice``, and the queries attend to
the written slots plus the new keys, causally among themselves (:func:`attend_with_cache`), so a
prefill of T tokens and T single-token steps give the same outputs as one causal pass.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.nn.attention import MaskSpec, attention, rotary_embedding
from jaxspeech.nn.dropout import dropout

NORMS = ("rms", "layer")
MLPS = ("swiglu", "gelu")


class KVCache(NamedTuple):
    """k, v: [B, max_len, kv_heads, head_dim]; length: [B] int32 slots written per row."""

    k: jax.Array
    v: jax.Array
    length: jax.Array


def init_cache(batch: int, max_len: int, kv_heads: int, head_dim: int, dtype=jnp.float32) -> KVCache:
    """An empty cache of ``max_len`` slots per row."""
    zeros = jnp.zeros((batch, max_len, kv_heads, head_dim), dtype)
    return KVCache(zeros, zeros, jnp.zeros((batch,), jnp.int32))


def attend_with_cache(k_buf: jax.Array, v_buf: jax.Array, new_k: jax.Array, new_v: jax.Array,
                      length: jax.Array) -> tuple[jax.Array, jax.Array, MaskSpec, jax.Array, jax.Array]:
    """Keys, values and mask for T new queries over a cache, and the cache with the new entries.

    k_buf, v_buf: [B,S,Hkv,D] with ``length`` [B] slots written; new_k, new_v: [B,T,Hkv,D] at
    positions length .. length + T - 1. Returns (keys, values, mask, k_next, v_next): the new
    entries written at ``length`` into k_next, v_next [B,S,Hkv,D]; one new token attends to the
    written slots and itself; several attend to the written slots and, causally, to each other.
    """
    steps, capacity = new_k.shape[1], k_buf.shape[1]
    write = jax.vmap(
        lambda buf, new, start: jax.lax.dynamic_update_slice_in_dim(buf, new.astype(buf.dtype), start, axis=0))
    k_next, v_next = write(k_buf, new_k, length), write(v_buf, new_v, length)
    if steps == 1:  # every written slot, itself included: no causal structure needed
        mask = MaskSpec(key_mask=jnp.arange(capacity)[None, :] <= length[:, None])
        return k_next, v_next, mask, k_next, v_next
    # The written slots, then the new keys causally (the mask's causal diagonal is aligned to the last key).
    filled = jnp.arange(capacity)[None, :] < length[:, None]
    keys, values = jnp.concatenate([k_buf, new_k], axis=1), jnp.concatenate([v_buf, new_v], axis=1)
    key_mask = jnp.concatenate([filled, jnp.ones(new_k.shape[:2], bool)], axis=1)
    return keys, values, MaskSpec(key_mask=key_mask, causal=True), k_next, v_next


def _norm(kind: str, dim: int, eps: float, rngs: nnx.Rngs) -> nnx.Module:
    if kind == "rms":
        return nnx.RMSNorm(dim, epsilon=eps, rngs=rngs)
    return nnx.LayerNorm(dim, epsilon=eps, rngs=rngs)


class CausalBlock(nnx.Module):
    """x + Attention(norm(x)) -> x + MLP(norm(x)), causal.

    ``__call__(x [B,T,D], *, cache=None, key_mask=None, rngs=None) -> (y [B,T,D], cache)``. Without a
    cache the tokens sit at positions 0..T-1 and ``key_mask`` [B,T] (padding) may be given; with a
    :class:`KVCache` they sit at ``cache.length + 0..T-1`` and the updated cache comes back.
    norm: "rms" (LLaMA) or "layer"; mlp: "swiglu" (LLaMA: down(silu(gate x) * up x)) or "gelu";
    num_kv_heads: grouped-query attention (query head h reads key/value head h // (H / Hkv)).
    """

    def __init__(self, d_model: int, num_heads: int, *, ff_dim: int, num_kv_heads: int | None = None,
                 norm: str = "rms", mlp: str = "swiglu", rope: bool = True, rope_base: float = 10000.0,
                 bias: bool = False, norm_eps: float = 1e-6, dropout_rate: float = 0.0, rngs: nnx.Rngs):
        num_kv_heads = num_kv_heads or num_heads
        if d_model % num_heads or num_heads % num_kv_heads:
            raise ValueError(f"need d_model ({d_model}) divisible by num_heads ({num_heads}) and num_heads "
                             f"divisible by num_kv_heads ({num_kv_heads})")
        if norm not in NORMS or mlp not in MLPS:
            raise ValueError(f"norm must be one of {NORMS} and mlp one of {MLPS}, got {norm!r}, {mlp!r}")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, d_model // num_heads
        self.rope, self.rope_base, self.mlp = rope, rope_base, mlp
        kv_dim = num_kv_heads * self.head_dim
        self.attn_norm = _norm(norm, d_model, norm_eps, rngs)
        self.query = nnx.Linear(d_model, d_model, use_bias=bias, rngs=rngs)
        self.key = nnx.Linear(d_model, kv_dim, use_bias=bias, rngs=rngs)
        self.value = nnx.Linear(d_model, kv_dim, use_bias=bias, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, use_bias=bias, rngs=rngs)
        self.mlp_norm = _norm(norm, d_model, norm_eps, rngs)
        self.up = nnx.Linear(d_model, ff_dim, use_bias=bias, rngs=rngs)
        self.gate = nnx.Linear(d_model, ff_dim, use_bias=bias, rngs=rngs) if mlp == "swiglu" else None
        self.down = nnx.Linear(ff_dim, d_model, use_bias=bias, rngs=rngs)
        self.drop = nnx.Dropout(dropout_rate)

    def _split(self, x: jax.Array, heads: int) -> jax.Array:
        return x.reshape(*x.shape[:2], heads, self.head_dim)

    def _attention(self, h, cache: KVCache | None, key_mask: jax.Array | None):
        batch, steps, _ = h.shape
        start = jnp.zeros((batch,), jnp.int32) if cache is None else cache.length
        positions = start[:, None] + jnp.arange(steps)[None, :]
        q = self._split(self.query(h), self.num_heads)
        k = self._split(self.key(h), self.num_kv_heads)
        v = self._split(self.value(h), self.num_kv_heads)
        if self.rope:
            q = rotary_embedding(q, positions, base=self.rope_base)
            k = rotary_embedding(k, positions, base=self.rope_base)
        if cache is None:
            return attention(q, k, v, MaskSpec(key_mask=key_mask, causal=True)), None
        if key_mask is not None:
            raise ValueError("with a cache, padding is the cache's length: key_mask must be None")
        keys, values, mask, k_next, v_next = attend_with_cache(cache.k, cache.v, k, v, cache.length)
        return attention(q, keys, values, mask), KVCache(k_next, v_next, cache.length + steps)

    def __call__(self, x: jax.Array, *, cache: KVCache | None = None, key_mask: jax.Array | None = None,
                 rngs: nnx.Rngs | None = None) -> tuple[jax.Array, KVCache | None]:
        chex.assert_rank(x, 3)
        attended, cache = self._attention(self.attn_norm(x), cache, key_mask)
        x = x + dropout(self.drop, self.out(attended.reshape(x.shape)), rngs)
        h = self.mlp_norm(x)
        hidden = jax.nn.silu(self.gate(h)) * self.up(h) if self.mlp == "swiglu" else jax.nn.gelu(self.up(h))
        return x + dropout(self.drop, self.down(hidden), rngs), cache
