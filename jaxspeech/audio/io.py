"""Host-side audio I/O (numpy): read, resample and write waveforms."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import soxr


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the path and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def resample(x: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample ``x [samples]`` or ``[samples, channels]`` with soxr (HQ) -> float32."""
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim not in (1, 2):
        raise ValueError(f"resample expects [samples] or [samples, channels], got {x.shape}")
    if orig_rate == new_rate:
        return x.copy()
    return soxr.resample(x, orig_rate, new_rate, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str | os.PathLike, *, sample_rate: int) -> np.ndarray:
    """Read a wav/flac/ogg file as mono float32 ``[samples]`` at ``sample_rate``.

    Channels are averaged; the file is resampled with soxr (HQ) if its rate differs.
    Raises AudioError if the file is missing, unreadable, empty or holds non-finite samples.
    """
    if not os.path.isfile(path):
        raise AudioError(path, "no such file")
    try:
        data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioError(path, f"cannot decode audio ({err})") from err
    if data.shape[0] == 0:
        raise AudioError(path, "file holds zero samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(path, "file holds NaN or infinite samples")
    return resample(data.mean(axis=1), file_rate, sample_rate)


def save_audio(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int) -> None:
    """Write ``waveform [samples]`` or ``[samples, channels]`` as 16-bit PCM WAV.

    Samples are clipped to [-1, 1]; non-finite samples raise AudioError.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim not in (1, 2) or waveform.shape[0] == 0:
        raise AudioError(
            path, f"need a non-empty [samples] or [samples, channels] array, got {waveform.shape}"
        )
    if not np.all(np.isfinite(waveform)):
        raise AudioError(path, "refusing to write NaN or infinite samples")
    sf.write(path, np.clip(waveform, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
