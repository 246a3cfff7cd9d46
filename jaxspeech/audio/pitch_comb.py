"""Where a pitch's harmonics fall on the mel filters: the F0 drawn in the log-mel's own coordinates.

A voiced frame's log-mel has a ripple across its low filters: peaks on the filters its harmonics
``h * f0`` hit, troughs between them. A network that must make that ripple from a scalar F0 has to
learn a steep, periodic function of it; :func:`harmonic_comb_mel` gives the ripple's pattern per
filter directly, so a conditioned network maps it to the mel bin by bin.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxspeech.audio.features import MelPreset, _preset_filterbank, get_preset


@functools.lru_cache(maxsize=8)
def _comb_operators(preset: MelPreset) -> tuple[np.ndarray, np.ndarray]:
    """(STFT bin frequencies [bins] Hz, the filterbank divided by each filter's total weight [bins, M])."""
    filterbank = _preset_filterbank(preset).astype(np.float64)
    weight = filterbank.sum(axis=0)
    normalised = np.where(weight > 0, filterbank / np.maximum(weight, 1e-12), 0.0)
    frequencies = np.fft.rfftfreq(preset.n_fft, 1.0 / preset.sample_rate)
    return frequencies.astype(np.float32), normalised.astype(np.float32)


def harmonic_comb_mel(f0: jax.Array, preset: str | MelPreset) -> jax.Array:
    """``[..., T, n_mels]`` in [-1, 1]: per mel filter, 2 x the filter's mean of the harmonic comb
    ``(1 + cos(2 pi f / f0)) / 2`` (peaks at ``h * f0``) minus 1; +1 for a filter whose weight sits on a
    harmonic, -1 between two, about 0 where the filter spans several harmonics (the pitch is not resolved
    there) and exactly 0 where ``f0 <= 0`` (unvoiced). f0: ``[..., T]`` Hz."""
    preset = get_preset(preset)
    frequencies, filters = _comb_operators(preset)
    f0 = jnp.asarray(f0, jnp.float32)
    voiced = f0 > 0
    cycles = jnp.asarray(frequencies) / jnp.where(voiced, f0, 1.0)[..., None]  # [..., T, bins]
    comb = 0.5 * (1.0 + jnp.cos(2.0 * jnp.pi * cycles))
    mean = jnp.einsum("...k,km->...m", comb, jnp.asarray(filters), precision=jax.lax.Precision.HIGHEST)
    return jnp.where(voiced[..., None], 2.0 * mean - 1.0, 0.0)


def mel_ripple(log_mel: jax.Array, width: int = 5) -> jax.Array:
    """``log_mel [..., T, M]`` minus its moving average over ``width`` neighbouring filters (edges repeated):
    the fine structure across filters that the harmonics make, the envelope removed."""
    log_mel = jnp.asarray(log_mel, jnp.float32)
    half = width // 2
    padded = jnp.pad(log_mel, [(0, 0)] * (log_mel.ndim - 1) + [(half, width - 1 - half)], mode="edge")
    return log_mel - jnp.mean(jnp.stack([padded[..., k:k + log_mel.shape[-1]] for k in range(width)]), axis=0)


def resolved_filters(preset: str | MelPreset, band_hz: tuple[float, float] = (100.0, 1000.0)) -> np.ndarray:
    """Indices of the mel filters whose peak lies in ``band_hz``: below 100 Hz lies under most voices' F0 (no
    harmonic, only the comb's trough), and the filters of tts_22k below 1 kHz are 37 Hz apart, narrower than any
    speaking voice's harmonic spacing."""
    preset = get_preset(preset)
    frequencies, filters = _comb_operators(preset)
    peaks = frequencies[np.argmax(filters, axis=0)]
    return np.flatnonzero((peaks >= band_hz[0]) & (peaks < band_hz[1]))


def _ripple_and_comb(log_mel: np.ndarray, f0: np.ndarray, preset: str | MelPreset) -> tuple[np.ndarray, np.ndarray]:
    """The :func:`mel_ripple` and the :func:`harmonic_comb_mel` on the voiced frames and the resolved filters."""
    voiced = np.asarray(f0) > 0
    filters = resolved_filters(preset)
    ripple = np.asarray(mel_ripple(log_mel))[voiced][:, filters]
    comb = np.asarray(harmonic_comb_mel(f0, preset))[voiced][:, filters]
    if ripple.size < 2:
        raise ValueError("no voiced frames to compare")
    return ripple.ravel(), comb.ravel()


def ripple_agreement(log_mel: np.ndarray, f0: np.ndarray, preset: str | MelPreset) -> float:
    """Pearson correlation, over the frames with ``f0 > 0`` and the :func:`resolved_filters`, between the
    :func:`mel_ripple` of ``log_mel [..., T, M]`` and :func:`harmonic_comb_mel` of ``f0 [..., T]`` Hz: how
    closely the mel's harmonics sit where that pitch puts them (a recording's own pitch: about 0.7 on eSpeak
    voices; one semitone off: about 0.2)."""
    return float(np.corrcoef(*_ripple_and_comb(log_mel, f0, preset))[0, 1])


def ripple_depth(log_mel: np.ndarray, f0: np.ndarray, preset: str | MelPreset) -> float:
    """The least-squares slope of the mel's ripple on the comb (same frames and filters as
    :func:`ripple_agreement`), in the log-mel's units: how deep the harmonic peaks of that pitch are."""
    ripple, comb = _ripple_and_comb(log_mel, f0, preset)
    comb = comb - comb.mean()
    return float(np.dot(comb, ripple - ripple.mean()) / max(float(np.dot(comb, comb)), 1e-12))
