"""Scaled dot-product attention: the single entry point every model calls, plus rotary embeddings.

``attention`` dispatches on ``impl``; ``reference_attention`` is the plain-JAX definition that
faster kernels are tested against. Masks are described by a small ``MaskSpec`` rather than a
dense [B,H,Tq,Tk] array so that kernels can exploit their structure.
"""

from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp

_IMPLS = ("xla",)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """Which keys each query may attend to.

    key_mask: [B,Tk] bool, True for real keys (padding is False), or None for no padding.
    causal: query i sees keys j <= i + (Tk - Tq), i.e. queries are aligned to the end of the
      keys, which is what incremental decoding with a cache needs; for Tq == Tk it is j <= i.
    """

    key_mask: jax.Array | None = None
    causal: bool = dataclasses.field(default=False, metadata=dict(static=True))

    @classmethod
    def from_lengths(cls, key_lengths: jax.Array, max_len: int, *, causal: bool = False) -> MaskSpec:
        """Key padding mask from valid lengths [B] for keys padded to ``max_len``."""
        return cls(key_mask=jnp.arange(max_len)[None, :] < key_lengths[:, None], causal=causal)


def _check_inputs(q, k, v, mask: MaskSpec | None):
    chex.assert_rank([q, k, v], 4)
    chex.assert_equal_shape([k, v])
    batch, _, heads, head_dim = q.shape
    if k.shape[0] != batch or k.shape[3] != head_dim:
        raise ValueError(f"q {q.shape} and k {k.shape} disagree on batch or head dim")
    if heads % k.shape[2]:
        raise ValueError(f"query heads ({heads}) must be a multiple of key/value heads ({k.shape[2]})")
    if mask is not None and mask.key_mask is not None:
        if mask.key_mask.shape != (batch, k.shape[1]):
            raise ValueError(f"key_mask must be [B,Tk] = {(batch, k.shape[1])}, got {mask.key_mask.shape}")


def reference_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: MaskSpec | None = None,
    *,
    scale: float | None = None,
) -> jax.Array:
    """softmax(q k^T * scale + mask) v with the softmax in float32.

    q: [B,Tq,H,D]; k, v: [B,Tk,Hkv,D] with H a multiple of Hkv (grouped-query attention:
    query head h reads key/value head h // (H // Hkv)). Returns [B,Tq,H,D] in q's dtype.
    A query whose every key is masked gets uniform weights over all keys (finite, never NaN);
    its output is meaningless and is expected to be masked downstream.
    """
    _check_inputs(q, k, v, mask)
    batch, q_len, heads, head_dim = q.shape
    k_len, kv_heads = k.shape[1], k.shape[2]
    group = heads // kv_heads
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    q_grouped = q.reshape(batch, q_len, kv_heads, group, head_dim)
    logits = jnp.einsum("bqhgd,bkhd->bhgqk", q_grouped, k, preferred_element_type=jnp.float32)
    logits = logits.astype(jnp.float32) * scale
    allowed = jnp.ones((batch, 1, 1, q_len, k_len), bool)
    if mask is not None and mask.key_mask is not None:
        allowed &= mask.key_mask[:, None, None, None, :]
    if mask is not None and mask.causal:
        offset = k_len - q_len
        causal = jnp.arange(k_len)[None, :] <= jnp.arange(q_len)[:, None] + offset
        allowed &= causal[None, None, None]
    # A finite floor (not -inf) keeps fully masked rows finite; exp underflows to exactly 0
    # for masked keys whenever the row has at least one allowed key.
    logits = jnp.where(allowed, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bhgqk,bkhd->bqhgd", weights.astype(v.dtype), v)
    return out.reshape(batch, q_len, heads, head_dim).astype(q.dtype)


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: MaskSpec | None = None,
    *,
    impl: str = "xla",
    scale: float | None = None,
) -> jax.Array:
    """Multi-head (optionally grouped-query) attention. Shapes as in ``reference_attention``.

    impl: "xla" runs ``reference_attention``; kernel implementations plug in here.
    """
    if impl not in _IMPLS:
        raise ValueError(f"unknown attention impl {impl!r}; available: {_IMPLS}")
    return reference_attention(q, k, v, mask, scale=scale)


def rotary_embedding(x: jax.Array, positions: jax.Array, *, base: float = 10000.0) -> jax.Array:
    """Rotary position embedding (Su et al. 2021, RoFormer), half-split (GPT-NeoX) layout.

    x: [B,T,H,D] with D even; positions: [T] or [B,T] integer positions. Channel pairs
    (i, i + D/2) are rotated by angle position * base**(-2i/D), so the dot product of a rotated
    query and key depends only on their position difference. Computed in float32.
    """
    chex.assert_rank(x, 4)
    head_dim = x.shape[-1]
    if head_dim % 2:
        raise ValueError(f"rotary embedding needs an even head dim, got {head_dim}")
    half = head_dim // 2
    inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    positions = jnp.asarray(positions, jnp.float32)
    if positions.ndim == 1:
        positions = positions[None, :]
    angles = positions[:, :, None, None] * inv_freq  # [B|1, T, 1, D/2]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return rotated.astype(x.dtype)
