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
