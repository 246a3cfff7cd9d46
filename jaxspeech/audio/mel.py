"""Mel scales and triangular mel filterbanks (librosa's definitions).

The filterbank is a host-side numpy constant: it depends only on static sizes, so it is
built once and constant-folded into any jitted function that uses it.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

_SCALES = ("slaney", "htk")
_NORMS = ("slaney", None)

# Slaney's Auditory Toolbox scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above,
# with 27 mels per factor of 6.4 in frequency.
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = np.log(6.4) / 27.0


def _as_float_array(x):
    """(array module, float array): jnp for jax arrays so the conversions work under jit,
    float64 numpy otherwise so host-side filterbanks keep full precision."""
    if isinstance(x, jax.Array):
        return jnp, x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return np, np.asarray(x, dtype=np.float64)


def _check_scale(scale: str) -> None:
    if scale not in _SCALES:
        raise ValueError(f"mel scale must be one of {_SCALES}, got {scale!r}")


def hz_to_mel(frequencies, scale: str = "slaney"):
    """Hz -> mel, elementwise, on the ``"slaney"`` (librosa default) or ``"htk"`` scale.

    Accepts python/numpy values (returns numpy) or jax arrays (returns jax, jit-safe).
    """
    _check_scale(scale)
    xp, f = _as_float_array(frequencies)
    if scale == "htk":
        return 2595.0 * xp.log10(1.0 + f / 700.0)
    linear = f / _SLANEY_HZ_PER_MEL
    logarithmic = _SLANEY_BREAK_MEL + xp.log(xp.maximum(f, _SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / (
        _SLANEY_LOG_STEP
    )
    return xp.where(f >= _SLANEY_BREAK_HZ, logarithmic, linear)


def mel_to_hz(mels, scale: str = "slaney"):
    """Mel -> Hz, elementwise; the inverse of :func:`hz_to_mel` on the same scale."""
    _check_scale(scale)
    xp, m = _as_float_array(mels)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    linear = m * _SLANEY_HZ_PER_MEL
    logarithmic = _SLANEY_BREAK_HZ * xp.exp(
        _SLANEY_LOG_STEP * (xp.maximum(m, _SLANEY_BREAK_MEL) - _SLANEY_BREAK_MEL)
    )
    return xp.where(m >= _SLANEY_BREAK_MEL, logarithmic, linear)


def mel_filterbank(
    *,
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    scale: str = "slaney",
    norm: str | None = "slaney",
) -> np.ndarray:
    """Triangular mel filters, float32 ``[n_fft // 2 + 1, n_mels]`` (librosa.filters.mel, .T).

    Filter centres are ``n_mels + 2`` points evenly spaced on the mel ``scale`` between
    ``fmin`` and ``fmax`` (default ``sample_rate / 2``); each filter rises linearly in Hz from
    its left neighbour's centre to its own and falls to its right neighbour's.
    ``norm="slaney"`` scales each filter by ``2 / bandwidth_hz`` so that it has unit area,
    ``None`` leaves peaks at 1. ``power_spec [..., bins] @ filterbank`` gives mel energies.
    """
    _check_scale(scale)
    if norm not in _NORMS:
        raise ValueError(f"mel norm must be one of {_NORMS}, got {norm!r}")
    if n_fft <= 0 or n_mels <= 0 or sample_rate <= 0:
        raise ValueError(
            f"sample_rate, n_fft and n_mels must be positive, got {sample_rate}, {n_fft}, {n_mels}"
        )
    nyquist = sample_rate / 2.0
    fmax = nyquist if fmax is None else float(fmax)
    if not 0.0 <= fmin < fmax <= nyquist:
        raise ValueError(
            f"need 0 <= fmin < fmax <= sample_rate / 2 = {nyquist}, got {fmin}, {fmax}"
        )

    bin_hz = np.linspace(0.0, nyquist, n_fft // 2 + 1)
    mel_edges = np.linspace(
        hz_to_mel(fmin, scale), hz_to_mel(fmax, scale), n_mels + 2
    )
    edges_hz = mel_to_hz(mel_edges, scale)
    widths = np.diff(edges_hz)
    offsets = edges_hz[:, None] - bin_hz[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    if not np.all(weights.max(axis=1) > 0):
        warnings.warn(
            f"some of the {n_mels} mel filters cover no FFT bin (n_fft={n_fft} is too small "
            "for this many mels); those channels are always zero",
            stacklevel=2,
        )
    return np.ascontiguousarray(weights.T, dtype=np.float32)
