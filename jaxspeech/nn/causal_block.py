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

    ``__call__(x [B,T,D], *, cache=None, mask=None, positions=None, rngs=None) -> (y [B,T,D], cache)``.
    Without a cache the tokens sit at ``positions`` [B,T] (default 0..T-1; packed rows restart them per
    segment) and ``mask`` is a causal :class:`MaskSpec` (default plain causal; it may add key padding,
    segment ids or the UniVoice dual span). With a :class:`KVCache` they sit at ``cache.length + 0..T-1``
    and the updated cache comes back. norm: "rms" (LLaMA) or "layer"; mlp: "swiglu" (LLaMA:
    down(silu(gate x) * up x)) or "gelu"; num_kv_heads: grouped-query attention (query head h reads
    key/value head h // (H / Hkv)); head_dim: per-head width (default d_model / num_heads);
    attention_impl: :func:`jaxspeech.nn.attention.attention`'s ``impl``.
    """

    def __init__(self, d_model: int, num_heads: int, *, ff_dim: int, num_kv_heads: int | None = None,
                 head_dim: int | None = None, norm: str = "rms", mlp: str = "swiglu", rope: bool = True,
                 rope_base: float = 10000.0, bias: bool = False, mlp_bias: bool | None = None,
                 norm_eps: float = 1e-6, dropout_rate: float = 0.0, attention_impl: str = "auto",
                 param_init: nnx.Initializer | None = None, rngs: nnx.Rngs):
        num_kv_heads = num_kv_heads or num_heads
        if num_heads % num_kv_heads or (head_dim is None and d_model % num_heads):
            raise ValueError(f"need num_heads ({num_heads}) divisible by num_kv_heads ({num_kv_heads}) and, "
                             f"without head_dim, d_model ({d_model}) divisible by num_heads")
        if norm not in NORMS or mlp not in MLPS:
            raise ValueError(f"norm must be one of {NORMS} and mlp one of {MLPS}, got {norm!r}, {mlp!r}")
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = head_dim or d_model // num_heads
        self.rope, self.rope_base, self.mlp, self.attention_impl = rope, rope_base, mlp, attention_impl
        q_dim, kv_dim = num_heads * self.head_dim, num_kv_heads * self.head_dim
        mlp_bias = bias if mlp_bias is None else mlp_bias
        init = {} if param_init is None else {"kernel_init": param_init}

        def linear(d_in, d_out, use_bias):
            return nnx.Linear(d_in, d_out, use_bias=use_bias, rngs=rngs, **init)

        self.attn_norm = _norm(norm, d_model, norm_eps, rngs)
        self.query = linear(d_model, q_dim, bias)
        self.key = linear(d_model, kv_dim, bias)
        self.value = linear(d_model, kv_dim, bias)
        self.out = linear(q_dim, d_model, bias)
        self.mlp_norm = _norm(norm, d_model, norm_eps, rngs)
        self.up = linear(d_model, ff_dim, mlp_bias)
        self.gate = linear(d_model, ff_dim, mlp_bias) if mlp == "swiglu" else None
        self.down = linear(ff_dim, d_model, mlp_bias)
        self.drop = nnx.Dropout(dropout_rate)

    def _split(self, x: jax.Array, heads: int) -> jax.Array:
        return x.reshape(*x.shape[:2], heads, self.head_dim)

    def _attention(self, h, cache: KVCache | None, mask: MaskSpec | None, positions: jax.Array | None):
        batch, steps, _ = h.shape
        if cache is not None and (mask is not None or positions is not None):
            raise ValueError("with a cache, positions and mask follow from the cache's length: pass neither")
        if mask is not None and not mask.causal:
            raise ValueError("a causal block needs a causal MaskSpec (causal=True)")
        if positions is None:
            start = jnp.zeros((batch,), jnp.int32) if cache is None else cache.length
            positions = start[:, None] + jnp.arange(steps)[None, :]
        q = self._split(self.query(h), self.num_heads)
        k = self._split(self.key(h), self.num_kv_heads)
        v = self._split(self.value(h), self.num_kv_heads)
        if self.rope:
            q = rotary_embedding(q, positions, base=self.rope_base)
            k = rotary_embedding(k, positions, base=self.rope_base)
        if cache is None:
            mask = MaskSpec(causal=True) if mask is None else mask
            return attention(q, k, v, mask, impl=self.attention_impl), None
        keys, values, mask, k_next, v_next = attend_with_cache(cache.k, cache.v, k, v, cache.length)
        return attention(q, keys, values, mask, impl=self.attention_impl), KVCache(k_next, v_next, cache.length + steps)

    def __call__(self, x: jax.Array, *, cache: KVCache | None = None, mask: MaskSpec | None = None,
                 positions: jax.Array | None = None, rngs: nnx.Rngs | None = None) -> tuple[jax.Array, KVCache | None]:
        chex.assert_rank(x, 3)
        attended, cache = self._attention(self.attn_norm(x), cache, mask, positions)
        x = x + dropout(self.drop, self.out(attended.reshape(*x.shape[:2], -1)), rngs)
        h = self.mlp_norm(x)
        hidden = jax.nn.silu(self.gate(h)) * self.up(h) if self.mlp == "swiglu" else jax.nn.gelu(self.up(h))
        return x + dropout(self.drop, self.down(hidden), rngs), cache
