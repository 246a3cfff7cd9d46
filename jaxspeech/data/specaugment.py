"""SpecAugment (Park et al. 2019) on padded log-mel batches, in jnp with fixed shapes.

Frequency masks: ``num_freq_masks`` bands of width uniform in [0, max_freq_width] bins.
Time masks: ``num_time_masks`` spans of width uniform in [0, floor(max_time_ratio * length)]
frames, where ``length`` is each utterance's own valid length (the "adaptive" time masks of
Park et al. 2020, "SpecAugment on large scale datasets"), placed entirely inside the valid frames.

Masked cells are set to the utterance's mean log-mel value over its valid frames and bins rather
than 0: log-mel features are not centred, so 0 would be an unusually loud value while the mean is
a neutral one. Padded frames are returned untouched. Time warping is not implemented.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def _random_spans(key: jax.Array, extent: jax.Array, max_width: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
    """``num`` spans per row with width ~ U{0..max_width} and start ~ U{0..extent-width}.

    extent, max_width: [B] int32 with max_width <= extent. Returns (start, width), each [B,num].
    """
    k_width, k_start = jax.random.split(key)
    u_width = jax.random.uniform(k_width, (extent.shape[0], num))
    width = jnp.floor(u_width * (max_width[:, None] + 1)).astype(jnp.int32)
    width = jnp.minimum(width, max_width[:, None])  # guards u*(n+1) rounding up to n+1
    u_start = jax.random.uniform(k_start, (extent.shape[0], num))
    room = extent[:, None] - width + 1
    start = jnp.minimum(jnp.floor(u_start * room).astype(jnp.int32), room - 1)
    return start, width


def _covered(start: jax.Array, width: jax.Array, size: int) -> jax.Array:
    """[B,size] bool: positions inside any of the spans [start, start + width)."""
    pos = jnp.arange(size)[None, :, None]
    return jnp.any((pos >= start[:, None, :]) & (pos < (start + width)[:, None, :]), axis=-1)


def spec_augment(
    mel: jax.Array,
    mel_mask: jax.Array,
    key: jax.Array,
    *,
    num_freq_masks: int = 2,
    max_freq_width: int = 27,
    num_time_masks: int = 10,
    max_time_ratio: float = 0.05,
) -> jax.Array:
    """Masks frequency bands and time spans of mel [B,T,F]; mel_mask [B,T] bool (right-padded).

    Returns mel with the same shape and dtype. Deterministic for a fixed key; with zero masks
    (or widths 0) it is the identity. At most num_time_masks * max_time_ratio of each utterance's
    frames and min(num_freq_masks * max_freq_width, F) of its bins are masked.
    """
    chex.assert_rank([mel, mel_mask], [3, 2])
    chex.assert_equal_shape_prefix([mel, mel_mask], 2)
    if min(num_freq_masks, max_freq_width, num_time_masks) < 0 or max_time_ratio < 0:
        raise ValueError("SpecAugment mask counts, widths and ratio must be non-negative")
    batch, frames, bins = mel.shape
    lengths = jnp.sum(mel_mask, axis=1, dtype=jnp.int32)
    k_freq, k_time = jax.random.split(key)

    freq_width = jnp.full((batch,), min(max_freq_width, bins), jnp.int32)
    f_start, f_width = _random_spans(k_freq, jnp.full((batch,), bins, jnp.int32), freq_width, num_freq_masks)
    freq_masked = _covered(f_start, f_width, bins)  # [B,F]

    time_width = jnp.floor(max_time_ratio * lengths).astype(jnp.int32)
    t_start, t_width = _random_spans(k_time, lengths, jnp.minimum(time_width, lengths), num_time_masks)
    time_masked = _covered(t_start, t_width, frames)  # [B,T]

    masked = (time_masked[:, :, None] | freq_masked[:, None, :]) & mel_mask[:, :, None]
    valid_sum = jnp.sum(jnp.where(mel_mask[:, :, None], mel, 0), axis=(1, 2))
    mean = valid_sum / jnp.maximum(lengths * bins, 1).astype(mel.dtype)
    return jnp.where(masked, mean[:, None, None], mel)
