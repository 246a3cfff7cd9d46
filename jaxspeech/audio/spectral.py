"""Short-time Fourier transform and its inverse in jnp.

Conventions follow torch.stft / librosa.stft: frame ``t`` covers samples
``[t * hop_length, t * hop_length + n_fft)`` of the (optionally centre-padded) signal, the
window is periodic (``fftbins=True``) and a window shorter than ``n_fft`` is zero-padded on
both sides to ``n_fft``. Output layout is time-major, ``[..., frames, n_fft // 2 + 1]``
(librosa and torch return ``[..., bins, frames]``). All sizes are static, so both functions
jit and vmap.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

_PAD_MODES = ("reflect", "constant", "edge")


def window_function(window: str | np.ndarray, win_length: int, n_fft: int) -> np.ndarray:
    """Analysis window as float64 ``[n_fft]``, centre-zero-padded from ``win_length``.

    ``window`` is ``"hann"`` (periodic, as torch.hann_window and scipy's
    ``get_window("hann", fftbins=True)``) or an explicit array of length ``win_length``.
    """
    if not 0 < win_length <= n_fft:
        raise ValueError(f"win_length must be in (0, n_fft={n_fft}], got {win_length}")
    if isinstance(window, str):
        if window != "hann":
            raise ValueError(f"unknown window {window!r}; pass 'hann' or an explicit array")
        # Periodic Hann: the symmetric window of length win_length + 1 without its last point.
        win = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    else:
        win = np.asarray(window, dtype=np.float64)
        if win.shape != (win_length,):
            raise ValueError(f"window array must have shape ({win_length},), got {win.shape}")
    left = (n_fft - win_length) // 2
    return np.pad(win, (left, n_fft - win_length - left))


def _frame_count(num_samples: int, n_fft: int, hop_length: int) -> int:
    return 1 + (num_samples - n_fft) // hop_length


def _overlap_add(frames: jnp.ndarray, hop_length: int) -> jnp.ndarray:
    """Sum ``[..., F, n]`` frames placed ``hop_length`` apart -> ``[..., (F - 1) * hop + n]``.

    Each frame is cut into ``ceil(n / hop)`` hop-sized chunks; chunk ``j`` of frame ``f``
    lands in output block ``f + j``, so the sum is ``ceil(n / hop)`` shifted dense adds. This
    avoids a scatter-add, whose float atomics are non-deterministic on GPU.
    """
    *lead, num_frames, n = frames.shape
    chunks = -(-n // hop_length)
    frames = jnp.pad(frames, [(0, 0)] * (len(lead) + 1) + [(0, chunks * hop_length - n)])
    frames = frames.reshape(*lead, num_frames, chunks, hop_length)
    no_pad = [(0, 0)] * len(lead)
    blocks = sum(
        jnp.pad(frames[..., j, :], no_pad + [(j, chunks - 1 - j), (0, 0)]) for j in range(chunks)
    )
    out = blocks.reshape(*lead, (num_frames + chunks - 1) * hop_length)
    return out[..., : (num_frames - 1) * hop_length + n]


def squared_window_envelope(window: np.ndarray, num_frames: int, hop_length: int) -> np.ndarray:
    """The overlap-added squared ``window [n_fft]`` of ``num_frames`` frames ``hop_length`` apart,
    float64 ``[(num_frames - 1) * hop + n_fft]``: what :func:`istft` divides by. It depends only on
    static sizes, so it is built on the host."""
    envelope = np.zeros((num_frames - 1) * hop_length + len(window))
    index = hop_length * np.arange(num_frames)[:, None] + np.arange(len(window))[None, :]
    np.add.at(envelope, index, np.broadcast_to(window**2, index.shape))
    return envelope


def stft(
    x: jnp.ndarray,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: str | np.ndarray = "hann",
    center: bool = False,
    pad_mode: str = "reflect",
) -> jnp.ndarray:
    """STFT of real ``x [..., samples]`` -> complex ``[..., frames, n_fft // 2 + 1]``.

    ``center=True`` pads ``n_fft // 2`` samples on both sides with ``pad_mode``
    ("reflect", "constant" or "edge") before framing, so frame ``t`` is centred on sample
    ``t * hop_length``. frames = ``1 + (padded_samples - n_fft) // hop_length``.
    """
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError("stft expects a signal of shape [..., samples], got a scalar")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"stft expects a real floating signal, got dtype {x.dtype}")
    if n_fft <= 0 or hop_length <= 0:
        raise ValueError(f"n_fft and hop_length must be positive, got {n_fft}, {hop_length}")
    if pad_mode not in _PAD_MODES:
        raise ValueError(f"pad_mode must be one of {_PAD_MODES}, got {pad_mode!r}")
    win = window_function(window, win_length or n_fft, n_fft)
    if center:
        pad = n_fft // 2
        if pad_mode == "reflect" and x.shape[-1] <= pad:
            raise ValueError(
                f"reflect padding by {pad} needs more than {pad} samples, got {x.shape[-1]}"
            )
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode=pad_mode)
    num_frames = _frame_count(x.shape[-1], n_fft, hop_length)
    if num_frames < 1:
        raise ValueError(
            f"signal of {x.shape[-1]} samples (after padding) is shorter than n_fft={n_fft}"
        )
    index = hop_length * np.arange(num_frames)[:, None] + np.arange(n_fft)[None, :]
    frames = x[..., index] * jnp.asarray(win, x.dtype)
    return jnp.fft.rfft(frames, n=n_fft, axis=-1)


def istft(
    spec: jnp.ndarray,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: str | np.ndarray = "hann",
    center: bool = False,
    length: int | None = None,
) -> jnp.ndarray:
    """Inverse STFT of complex ``spec [..., frames, n_fft // 2 + 1]`` -> real ``[..., samples]``.

    Weighted overlap-add of the windowed inverse FFTs divided by the overlap-added squared
    window (least-squares inverse, Griffin & Lim 1984); samples where that envelope is zero
    are left undivided, as librosa does. ``center=True`` drops the ``n_fft // 2`` padding
    that ``stft(center=True)`` added. ``length`` trims or zero-pads the result to exactly
    that many samples; without it the output has ``(frames - 1) * hop + n_fft`` samples,
    minus ``2 * (n_fft // 2)`` when centred.
    """
    spec = jnp.asarray(spec)
    if spec.ndim < 2:
        raise ValueError(f"istft expects [..., frames, bins], got shape {spec.shape}")
    if spec.shape[-1] != n_fft // 2 + 1:
        raise ValueError(
            f"spec has {spec.shape[-1]} frequency bins, n_fft={n_fft} needs {n_fft // 2 + 1}"
        )
    win = window_function(window, win_length or n_fft, n_fft)
    num_frames = spec.shape[-2]
    real_dtype = jnp.finfo(spec.dtype).dtype
    frames = jnp.fft.irfft(spec, n=n_fft, axis=-1) * jnp.asarray(win, real_dtype)
    y = _overlap_add(frames, hop_length)
    envelope = squared_window_envelope(win, num_frames, hop_length)
    nonzero = envelope > np.finfo(np.float32).tiny
    y = y * jnp.asarray(np.where(nonzero, 1.0 / np.where(nonzero, envelope, 1.0), 1.0), real_dtype)
    start = n_fft // 2 if center else 0
    if length is None:
        stop = y.shape[-1] - start
    else:
        stop = start + length
        if stop > y.shape[-1]:
            y = jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, stop - y.shape[-1])])
    return y[..., start:stop]
