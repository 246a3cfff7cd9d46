"""Structured attention masks for speech models: which keys each query may attend to.

A ``MaskSpec`` describes the mask as data (lengths, segment ids, spans, a causal flag) instead
of a dense [B,Tq,Tk] array, so that kernels can skip whole blocks. ``dense_mask`` expands it
for the reference implementation and for tests; ``block_visibility`` reduces it to one boolean
per (query block, key block) from per-block summaries, without ever forming the dense mask.

Positions: query row i sits at absolute position i + (Tk - Tq), key j at position j. Queries
are aligned to the end of the keys, which is what incremental decoding with a cache needs; for
self-attention (Tq == Tk) the two coincide.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """Which keys each query may attend to; a pair (q, k) is allowed when every given part allows it.

    key_mask: [B,Tk] bool, True for real keys (padding is False), or None for no padding.
    causal: query position p sees keys j <= p.
    q_segment_ids: [B,Tq] int, kv_segment_ids: [B,Tk] int: packed utterances; a query sees only
      keys with the same id. Ids are non-negative (negative values are reserved by the kernel).
      Give both or neither.
    span_start, span_end: [B] int, the UniVoice dual mask (needs causal=True): additionally every
      (q, k) with both positions in [span_start, span_end) is allowed, so the speech span is
      bidirectional while the text before it and the rows after it stay causal.
    q_span_ids: [B,Tq] int, kv_span_ids: [B,Tk] int: the dual mask with several spans per row (packed
      UniVoice rows, one span per utterance; needs causal=True): additionally every (q, k) whose ids
      are equal and non-negative is allowed (-1 outside every span). Give both or neither, and not
      with span_start/span_end. Blocks are skipped exactly when the non-negative ids never decrease
      along the sequence (spans laid out in order).
    key_mask_is_prefix: a promise that each key_mask row is True then False (as ``from_lengths``
      builds it), which lets cuDNN take the mask as lengths.
    """

    key_mask: jax.Array | None = None
    causal: bool = dataclasses.field(default=False, metadata=dict(static=True))
    q_segment_ids: jax.Array | None = None
    kv_segment_ids: jax.Array | None = None
    span_start: jax.Array | None = None
    span_end: jax.Array | None = None
    q_span_ids: jax.Array | None = None
    kv_span_ids: jax.Array | None = None
    key_mask_is_prefix: bool = dataclasses.field(default=False, metadata=dict(static=True))

    @classmethod
    def from_lengths(cls, key_lengths: jax.Array, max_len: int, *, causal: bool = False) -> MaskSpec:
        """Key padding mask from valid lengths [B] for keys padded to ``max_len``."""
        key_mask = jnp.arange(max_len)[None, :] < jnp.asarray(key_lengths)[:, None]
        return cls(key_mask=key_mask, causal=causal, key_mask_is_prefix=True)

    @property
    def has_segments(self) -> bool:
        return self.q_segment_ids is not None

    @property
    def has_span(self) -> bool:
        """A dual mask, by span bounds or by span ids."""
        return self.span_start is not None or self.q_span_ids is not None

    @property
    def allows_all(self) -> bool:
        """True when no part is given: every pair is allowed (known at trace time)."""
        return self.key_mask is None and not self.causal and not self.has_segments and not self.has_span


def check_attention_inputs(q: jax.Array, k: jax.Array, v: jax.Array, mask: MaskSpec | None) -> None:
    """Raises ValueError naming the problem when q [B,Tq,H,D], k/v [B,Tk,Hkv,D] or the mask disagree."""
    chex.assert_rank([q, k, v], 4)
    if k.shape != v.shape:
        raise ValueError(f"k {k.shape} and v {v.shape} must have the same shape")
    batch, q_len, heads, head_dim = q.shape
    k_len = k.shape[1]
    if k.shape[0] != batch or k.shape[3] != head_dim:
        raise ValueError(f"q {q.shape} and k {k.shape} disagree on batch or head dim")
    if heads % k.shape[2]:
        raise ValueError(f"query heads ({heads}) must be a multiple of key/value heads ({k.shape[2]})")
    if mask is None:
        return
    expected = {
        "key_mask": (batch, k_len),
        "q_segment_ids": (batch, q_len),
        "kv_segment_ids": (batch, k_len),
        "span_start": (batch,),
        "span_end": (batch,),
        "q_span_ids": (batch, q_len),
        "kv_span_ids": (batch, k_len),
    }
    for name, shape in expected.items():
        value = getattr(mask, name)
        if value is not None and tuple(value.shape) != shape:
            raise ValueError(f"{name} must be {shape} for q {q.shape} and k {k.shape}, got {tuple(value.shape)}")
    if (mask.q_segment_ids is None) != (mask.kv_segment_ids is None):
        raise ValueError("give both q_segment_ids and kv_segment_ids, or neither")
    if (mask.span_start is None) != (mask.span_end is None):
        raise ValueError("give both span_start and span_end, or neither")
    if (mask.q_span_ids is None) != (mask.kv_span_ids is None):
        raise ValueError("give both q_span_ids and kv_span_ids, or neither")
    if mask.span_start is not None and mask.q_span_ids is not None:
        raise ValueError("give the dual span as span_start/span_end or as span ids, not both")
    if mask.has_span and not mask.causal:
        raise ValueError("a dual span widens a causal mask (the UniVoice dual mask): set causal=True")


def _query_positions(q_len: int, k_len: int) -> jax.Array:
    return jnp.arange(q_len) + (k_len - q_len)


def span_ids(mask: MaskSpec, q_len: int, k_len: int) -> tuple[jax.Array, jax.Array]:
    """The dual span(s) of a mask with ``has_span`` as ids per position: (q [B,Tq], kv [B,Tk]) int32,
    -1 outside every span (span_start/span_end give id 0 inside the row's span)."""
    if mask.q_span_ids is not None:
        return mask.q_span_ids.astype(jnp.int32), mask.kv_span_ids.astype(jnp.int32)
    start, end = mask.span_start[:, None], mask.span_end[:, None]

    def ids(positions):
        return jnp.where((positions[None, :] >= start) & (positions[None, :] < end), 0, -1).astype(jnp.int32)

    return ids(_query_positions(q_len, k_len)), ids(jnp.arange(k_len))


def dense_mask(mask: MaskSpec | None, batch: int, q_len: int, k_len: int) -> jax.Array:
    """The allowed (query, key) pairs as a dense [B,Tq,Tk] bool array."""
    allowed = jnp.ones((batch, q_len, k_len), bool)
    if mask is None:
        return allowed
    q_pos = _query_positions(q_len, k_len)[None, :, None]
    k_pos = jnp.arange(k_len)[None, None, :]
    if mask.key_mask is not None:
        allowed &= mask.key_mask[:, None, :]
    if mask.causal:
        visible = k_pos <= q_pos
        if mask.has_span:
            q_span, kv_span = span_ids(mask, q_len, k_len)
            visible = visible | ((q_span[:, :, None] == kv_span[:, None, :]) & (q_span[:, :, None] >= 0))
        allowed &= visible
    if mask.has_segments:
        allowed &= mask.q_segment_ids[:, :, None] == mask.kv_segment_ids[:, None, :]
    return allowed


def _blocks(x: jax.Array, block: int, fill) -> jax.Array:
    """[B,T] -> [B, ceil(T / block), block], padding the tail with ``fill``."""
    pad = -x.shape[1] % block
    x = jnp.pad(x, ((0, 0), (0, pad)), constant_values=fill)
    return x.reshape(x.shape[0], -1, block)


def block_visibility(
    mask: MaskSpec | None, batch: int, q_len: int, k_len: int, block_q: int, block_k: int
) -> jax.Array:
    """[B, ceil(Tq/block_q), ceil(Tk/block_k)] bool: False where the block has no allowed pair.

    Built from per-block summaries in O(B (Tq + Tk) + B nq nk) work. It never hides an allowed
    pair (it is a superset of the dense mask reduced per block) and is exact for each mask kind
    alone and for segment and span ids that are sorted (packed utterances).
    """
    num_q, num_k = -(-q_len // block_q), -(-k_len // block_k)
    visible = jnp.ones((batch, num_q, num_k), bool)
    if mask is None:
        return visible
    # Per query block, the last real row's absolute position; per key block, the first key.
    q_last = jnp.minimum(jnp.arange(num_q) * block_q + block_q, q_len) - 1 + (k_len - q_len)
    k_first = jnp.arange(num_k) * block_k
    key_valid = jnp.ones((batch, k_len), bool) if mask.key_mask is None else mask.key_mask
    visible &= _blocks(key_valid, block_k, False).any(-1)[:, None, :]
    if mask.causal:
        causal = (k_first[None, :] <= q_last[:, None])[None]
        if mask.has_span:
            q_span, kv_span = span_ids(mask, q_len, k_len)
            causal = causal | _id_ranges_meet(q_span, kv_span, q_span >= 0, key_valid & (kv_span >= 0),
                                              block_q, block_k)
        visible &= causal
    if mask.has_segments:
        q_real = jnp.ones((batch, q_len), bool)
        visible &= _id_ranges_meet(mask.q_segment_ids, mask.kv_segment_ids, q_real, key_valid, block_q, block_k)
    return visible


def _id_ranges_meet(q_ids: jax.Array, kv_ids: jax.Array, q_real: jax.Array, k_real: jax.Array, block_q: int,
                    block_k: int) -> jax.Array:
    """[B, nq, nk]: whether the range of ids of a query block's real rows meets that of a key block's
    real keys (a superset of "some pair has equal ids", exact for ids that never decrease)."""
    big = jnp.iinfo(jnp.int32).max

    def ranges(ids, real, block):
        ids, real = _blocks(ids.astype(jnp.int32), block, 0), _blocks(real, block, False)
        return jnp.where(real, ids, big).min(-1), jnp.where(real, ids, -big).max(-1)

    q_min, q_max = ranges(q_ids, q_real, block_q)
    k_min, k_max = ranges(kv_ids, k_real, block_k)
    return (q_min[:, :, None] <= k_max[:, None, :]) & (k_min[:, None, :] <= q_max[:, :, None])
