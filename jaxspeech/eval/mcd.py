"""Mel-cepstral distortion (MCD) between synthesized and reference audio, aligned by DTW.

The cepstrum here is the DCT of the log-mel spectrum (an "MFCC-like" mel-cepstrum), not
SPTK's all-pass-warped mel-generalised cepstrum, so values are comparable with each other but
not with MCDs computed by SPTK/pysptk. Coefficients are scaled as a real cepstrum,
``L_k = c_0 + 2 sum_n c_n cos(pi n (k + 1/2) / M)`` for the M mel channels ``L_k`` in nepers
(ln amplitude), which makes the usual formula ``10 / ln 10 * sqrt(2 sum_n (c_n - c'_n)^2)``
the dB-scaled RMS difference of the two (mean-removed, cepstrally smoothed) log-mel spectra.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxspeech.audio.features import MelPreset, get_preset, log_mel

_DB_PER_NEPER = 10.0 / np.log(10.0)
MCD_MEL_FILTERS = 80  # the filterbank the cepstra are taken over by default, whatever a preset's own n_mels


def mel_cepstrum(ln_mel: np.ndarray, n_coefficients: int = 13) -> np.ndarray:
    """Cepstral coefficients c_1..c_n of a natural-log mel spectrum ``[..., T, M]`` -> ``[..., T, n]``.

    ``c_n = (1 / M) sum_k L_k cos(pi n (k + 1/2) / M)`` (DCT-II; c_0, the level, is left out).
    """
    ln_mel = np.asarray(ln_mel, dtype=np.float64)
    if ln_mel.ndim < 2:
        raise ValueError(f"ln_mel must be [..., frames, mels], got shape {ln_mel.shape}")
    channels = ln_mel.shape[-1]
    if not 1 <= n_coefficients < channels:
        raise ValueError(f"n_coefficients must be in [1, {channels - 1}], got {n_coefficients}")
    n = np.arange(1, n_coefficients + 1)[:, None]
    basis = np.cos(np.pi * n * (np.arange(channels)[None, :] + 0.5) / channels) / channels
    return ln_mel @ basis.T


def dtw(cost: np.ndarray) -> tuple[float, np.ndarray]:
    """Dynamic time warping over a cost matrix ``[N, M]`` -> (total cost, path ``[L, 2]``).

    Steps (1, 1), (0, 1), (1, 0) with unit weights from (0, 0) to (N - 1, M - 1), as
    ``librosa.sequence.dtw``'s defaults; ties prefer the diagonal, then (0, 1). The path is
    ordered from (0, 0). The recursion runs one anti-diagonal at a time, vectorised.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or min(cost.shape) < 1:
        raise ValueError(f"cost must be a non-empty [N, M] matrix, got shape {cost.shape}")
    if not np.all(np.isfinite(cost)):
        raise ValueError("cost must be finite")
    rows, cols = cost.shape
    acc = np.full((rows + 1, cols + 1), np.inf)  # acc[i + 1, j + 1] for cell (i, j)
    acc[0, 0] = 0.0
    for diagonal in range(rows + cols - 1):
        i = np.arange(max(0, diagonal - cols + 1), min(rows, diagonal + 1))
        j = diagonal - i
        best = np.minimum(np.minimum(acc[i, j], acc[i + 1, j]), acc[i, j + 1])
        acc[i + 1, j + 1] = cost[i, j] + best
    path = [(rows - 1, cols - 1)]
    i, j = rows - 1, cols - 1
    while i > 0 or j > 0:
        # Predecessors in tie order: diagonal, left (0, 1 step), up (1, 0 step).
        options = ((i - 1, j - 1), (i, j - 1), (i - 1, j))
        i, j = min(options, key=lambda p: acc[p[0] + 1, p[1] + 1])
        path.append((i, j))
    return float(acc[rows, cols]), np.asarray(path[::-1])


def cepstral_distortion(cepstra: np.ndarray, reference: np.ndarray) -> float:
    """MCD in dB between cepstra ``[T1, n]`` and ``[T2, n]``: the mean of the per-frame
    ``10 / ln 10 * sqrt(2 sum (c - c')^2)`` along the minimum-total-distortion DTW path."""
    cepstra, reference = np.asarray(cepstra, np.float64), np.asarray(reference, np.float64)
    if cepstra.ndim != 2 or reference.ndim != 2 or cepstra.shape[1] != reference.shape[1]:
        raise ValueError(f"cepstra must be [T1, n] and [T2, n], got {cepstra.shape}, {reference.shape}")
    diff = cepstra[:, None, :] - reference[None, :, :]
    frame_mcd = _DB_PER_NEPER * np.sqrt(2.0 * np.sum(np.square(diff), axis=-1))
    total, path = dtw(frame_mcd)
    return total / len(path)


def _ln_mel_amplitude(audio: np.ndarray, preset: MelPreset) -> np.ndarray:
    features = np.asarray(log_mel(np.asarray(audio, np.float32), preset), np.float64)
    ln_mel = features * preset.log_scale - preset.log_offset
    if preset.log == "log10":
        ln_mel = ln_mel * np.log(10.0)
    return ln_mel / preset.power  # ln of amplitude, whatever power the preset's mel is of


def mel_cepstral_distortion(
    audio: np.ndarray,
    reference: np.ndarray,
    *,
    preset: str | MelPreset = "tts_22k",
    n_coefficients: int = 13,
    n_mels: int | None = MCD_MEL_FILTERS,
) -> float:
    """DTW-aligned MCD (dB) between waveforms ``audio [S1]`` and ``reference [S2]``.

    Both must be at ``preset.sample_rate``; each becomes the preset's log-mel over ``n_mels`` filters
    (default 80 whatever the preset's own count, so that models with different filterbanks, e.g. tts_22k and
    tts_22k_128, are scored on one scale; None: the preset's), converted to ln amplitude, then
    :func:`mel_cepstrum` (c_1..c_``n_coefficients``) and :func:`cepstral_distortion`. All frames count,
    silences included.
    """
    preset = get_preset(preset)
    if n_mels is not None:
        preset = dataclasses.replace(preset, n_mels=n_mels)
    audio, reference = np.asarray(audio), np.asarray(reference)
    if audio.ndim != 1 or reference.ndim != 1:
        raise ValueError(f"audio and reference must be 1-D waveforms, got {audio.shape}, {reference.shape}")
    return cepstral_distortion(
        mel_cepstrum(_ln_mel_amplitude(audio, preset), n_coefficients),
        mel_cepstrum(_ln_mel_amplitude(reference, preset), n_coefficients),
    )
