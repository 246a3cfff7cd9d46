"""Where each piece of a UniVoice row sits in the LLM's sequence, and the row's dual attention mask.

A row is up to four segments laid end to end without gaps, then padding:

    [speech embeddings (ASR)] [text tokens] [timestep token (TTS)] [speech frames (TTS)] [padding]

with per-row lengths (0 for an absent segment). An ASR row is speech + text (prompt and transcript),
a TTS row text (reference + target text) + timestep token + frames; a TTS row whose text is dropped
(classifier-free guidance) has text length 0. Because the segments are packed from the start,
positions are 0..total-1 in every row, so RoPE sees no gap, and the frames of a TTS row are one
contiguous span [span_start, span_end): the dual mask (UniVoice) is causal with that span
bidirectional, as a :class:`MaskSpec` (empty span for ASR rows, so a batch mixes both).
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxspeech.nn.attention import MaskSpec

SEGMENTS = ("speech", "text", "time", "frames")


class RowLayout(NamedTuple):
    """offsets: [B, 5] int32, segment k of a row occupies [offsets[:, k], offsets[:, k + 1]) (k in
    SEGMENTS order; offsets[:, 4] is the row's length); capacities: the padded length of each segment's
    source array (static); length: the sequence length S (static)."""

    offsets: jax.Array
    capacities: tuple[int, int, int, int]
    length: int

    @property
    def total(self) -> jax.Array:
        """[B] tokens in each row (padding excluded)."""
        return self.offsets[:, 4]

    def key_mask(self) -> jax.Array:
        """[B, S] True on the row's tokens."""
        return jnp.arange(self.length)[None, :] < self.total[:, None]

    def causal_mask(self) -> MaskSpec:
        """Causal with the padding masked (Flow-Omni: frames are generated one by one)."""
        return MaskSpec(key_mask=self.key_mask(), causal=True)

    def mask(self) -> MaskSpec:
        """The dual mask: causal, padding masked, every (q, k) inside the frames segment allowed."""
        return MaskSpec(key_mask=self.key_mask(), causal=True, span_start=self.offsets[:, 3],
                        span_end=self.offsets[:, 4])  # fmt: skip

    def destinations(self, segment: str) -> jax.Array:
        """[B, capacity] sequence index of each element of ``segment``'s source array (elements past
        the row's segment length point past the row: read them only under the segment's mask)."""
        k = SEGMENTS.index(segment)
        return self.offsets[:, k:k + 1] + jnp.arange(self.capacities[k], dtype=jnp.int32)[None, :]

    def gather(self, sequence: jax.Array, segment: str, shift: int = 0) -> jax.Array:
        """sequence [B, S, ...] -> [B, capacity, ...]: ``segment``'s elements back in source order (with
        ``shift`` -1: the element before each, whose state predicts it in a causal model)."""
        index = jnp.clip(self.destinations(segment) + shift, 0, self.length - 1)
        return jnp.take_along_axis(sequence, index.reshape(index.shape + (1,) * (sequence.ndim - 2)), axis=1)


def row_layout(lengths: jax.Array, capacities: tuple[int, int, int, int], length: int | None = None) -> RowLayout:
    """The layout of rows with segment ``lengths`` [B, 4] (SEGMENTS order, each <= its capacity).
    length: the sequence length S (default: the sum of capacities, which always fits)."""
    chex.assert_shape(lengths, (None, 4))
    length = sum(capacities) if length is None else length
    lengths = jnp.asarray(lengths, jnp.int32)
    offsets = jnp.concatenate([jnp.zeros_like(lengths[:, :1]), jnp.cumsum(lengths, axis=1)], axis=1)
    return RowLayout(offsets, tuple(int(c) for c in capacities), int(length))


def assemble(layout: RowLayout, pieces: tuple[jax.Array, jax.Array, jax.Array, jax.Array]) -> jax.Array:
    """The rows' sequences [B, S, D] from the four segment sources (each [B, capacity_k, D], in
    SEGMENTS order): element i of segment k goes to offsets[:, k] + i when i < its length; padding
    positions hold zeros."""
    chex.assert_equal_shape_prefix(pieces, 1)
    for piece, capacity in zip(pieces, layout.capacities, strict=True):
        chex.assert_shape(piece, (None, capacity, None))
    source = jnp.concatenate(pieces, axis=1)  # [B, sum(capacities), D]
    position = jnp.arange(layout.length, dtype=jnp.int32)[None, :]  # [1, S]
    # Segment of each position: the last k with offsets[k] <= position (empty segments are skipped).
    segment = jnp.sum(position[:, :, None] >= layout.offsets[:, None, 1:4], axis=-1)  # [B, S] in 0..3
    bases = jnp.cumsum(jnp.asarray((0,) + layout.capacities[:3], jnp.int32))  # source start of each segment
    start = jnp.take_along_axis(layout.offsets[:, :4], segment, axis=1)
    index = jnp.clip(bases[segment] + position - start, 0, source.shape[1] - 1)  # padding reads any element
    gathered = jnp.take_along_axis(source, index[..., None], axis=1)
    return jnp.where(layout.key_mask()[..., None], gathered, 0).astype(source.dtype)


class Packing(NamedTuple):
    """Several rows laid end to end in each of R packed rows of P positions (``data.packing`` plans it).

    row: [B] int32, the packed row of each row (-1: an empty batch slot); offset: [B] int32, where the
    row starts in it; owner: [R, P] int32, the row each packed position is reserved for (-1: none; a
    row's reservation is its planned length, and positions past its actual length are padding).
    """

    row: jax.Array
    offset: jax.Array
    owner: jax.Array


class PackedRows(NamedTuple):
    """The rows of ``layout`` packed by ``packing``: moves sequences in and out of the packed rows and
    gives their attention mask and positions (each row's positions restart at 0, so RoPE, the mask and
    hence every output are as if it ran alone).

    ids: [R, P] int32, the row's start offset at each position (sorted along a packed row: the segment
    ids); index: [R, P] int32, the position within the row; valid: [R, P] bool, real tokens.
    """

    layout: RowLayout
    packing: Packing
    ids: jax.Array
    index: jax.Array
    valid: jax.Array

    def pack(self, sequence: jax.Array) -> jax.Array:
        """[B, S, ...] rows -> [R, P, ...] packed rows (zeros on padding)."""
        owner = jnp.maximum(self.packing.owner, 0)
        flat = sequence.reshape((-1,) + sequence.shape[2:])
        gathered = flat[owner * self.layout.length + jnp.clip(self.index, 0, self.layout.length - 1)]
        return jnp.where(self.valid.reshape(self.valid.shape + (1,) * (sequence.ndim - 2)), gathered, 0)

    def unpack(self, packed: jax.Array) -> jax.Array:
        """[R, P, ...] packed rows -> [B, S, ...] rows (positions past a row's length read any element)."""
        num_packed, width = packed.shape[:2]
        index = self.packing.offset[:, None] + jnp.arange(self.layout.length, dtype=jnp.int32)[None, :]
        flat_index = jnp.clip(self.packing.row, 0, num_packed - 1)[:, None] * width + jnp.clip(index, 0, width - 1)
        return packed.reshape((-1,) + packed.shape[2:])[flat_index]

    def mask(self, *, dual: bool = True) -> MaskSpec:
        """Causal within each row and never across rows, padding masked; ``dual``: each row's frames
        segment bidirectional (the rows' dual masks), else plain causal (Flow-Omni)."""
        spans = {}
        if dual:
            owner = jnp.maximum(self.packing.owner, 0)
            start = jnp.take(self.layout.offsets[:, 3], owner)
            end = jnp.take(self.layout.offsets[:, 4], owner)
            in_span = self.valid & (self.index >= start) & (self.index < end)
            span = jnp.where(in_span, self.ids, -1)
            spans = dict(q_span_ids=span, kv_span_ids=span)
        return MaskSpec(key_mask=self.valid, causal=True, q_segment_ids=self.ids, kv_segment_ids=self.ids, **spans)

    @property
    def positions(self) -> jax.Array:
        """[R, P] int32 positions for RoPE: each row's own 0..total-1."""
        return jnp.where(self.valid, self.index, 0)


def packed_rows(layout: RowLayout, packing: Packing) -> PackedRows:
    """The packed view of ``layout``'s rows (see :class:`PackedRows`); rows longer than their reservation
    are a planning error the caller must not make (their tail would be dropped)."""
    chex.assert_shape([packing.row, packing.offset], (layout.offsets.shape[0],))
    chex.assert_rank(packing.owner, 2)
    owner = jnp.maximum(packing.owner, 0)
    start = jnp.take(packing.offset, owner)
    index = jnp.arange(packing.owner.shape[1], dtype=jnp.int32)[None, :] - start
    valid = (packing.owner >= 0) & (index < jnp.take(layout.total, owner))
    return PackedRows(layout, packing, start.astype(jnp.int32), index.astype(jnp.int32), valid)
