"""F0 estimation (YIN) frame-aligned with a log-mel preset, and the ProsodyFM pitch processor.

``estimate_f0(waveform, "tts_22k")`` gives one F0 value per ``log_mel(waveform, "tts_22k")``
frame: analysis frame ``t`` is centred on the same sample as mel frame ``t``.
``pitch_contour`` turns (f0, voiced) into the continuous log-F0 curve ProsodyFM conditions on
(smooth, interpolate over unvoiced frames, smooth again), and ``terminal_slope`` /
``contour_direction`` summarise the end of a phrase's contour (rising or falling).
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxspeech.audio.features import MelPreset, get_preset, num_frames


def _yin_sizes(preset: MelPreset, fmin: float, fmax: float, frame_length: int | None):
    """(frame_length, integration window W, shortest lag, longest lag) in samples."""
    if not 0.0 < fmin < fmax < preset.sample_rate / 2:
        raise ValueError(
            f"need 0 < fmin < fmax < sample_rate / 2 = {preset.sample_rate / 2}, got {fmin}, {fmax}"
        )
    length = preset.n_fft if frame_length is None else int(frame_length)
    lag_min = int(np.floor(preset.sample_rate / fmax))
    lag_max = int(np.ceil(preset.sample_rate / fmin))
    # Lags up to lag_max + 1 are needed for parabolic refinement at lag_max, and the integration
    # window must hold at least one longest period for the difference function to mean anything.
    window = length - lag_max - 1
    if window < lag_max:
        raise ValueError(
            f"frame_length={length} is too short for fmin={fmin} Hz at {preset.sample_rate} Hz: "
            f"YIN needs at least {2 * lag_max + 1} samples (two longest periods)"
        )
    return length, window, max(lag_min, 1), lag_max


def _frames(x: jnp.ndarray, preset: MelPreset, length: int) -> jnp.ndarray:
    """Zero-padded frames ``[T, length]`` of ``x [S]`` centred on the preset's mel-frame centres."""
    count = num_frames(x.shape[-1], preset)
    # Mel frame t covers padded samples [t * hop, t * hop + n_fft), i.e. original samples from
    # t * hop - pad_samples; the analysis frame shares its centre.
    first = -preset.pad_samples + preset.n_fft // 2 - length // 2
    left = max(0, -first)
    right = max(0, first + (count - 1) * preset.hop_length + length - x.shape[-1])
    x = jnp.pad(x, (left, right))
    index = first + left + preset.hop_length * np.arange(count)[:, None] + np.arange(length)[None, :]
    return x[index]


def _yin(frames, *, window, lag_min, lag_max, trough_threshold):
    """Period (samples, fractional) and aperiodicity (CMND at the period) per frame ``[T]``."""
    length = frames.shape[-1]
    frames = frames - jnp.mean(frames, axis=-1, keepdims=True)
    lags = lag_max + 2
    # Cross-correlation of the first `window` samples with the frame: r[tau] = sum_j x_j x_{j+tau}.
    # j + tau <= length - 1, so a length-point circular correlation never wraps.
    head = jnp.fft.rfft(frames[:, :window], n=length)
    corr = jnp.fft.irfft(jnp.fft.rfft(frames, n=length) * jnp.conj(head), n=length)[:, :lags]
    energy = jnp.pad(jnp.cumsum(jnp.square(frames), axis=-1), ((0, 0), (1, 0)))
    shifted_energy = energy[:, window : window + lags] - energy[:, :lags]
    # YIN difference function (de Cheveigné & Kawahara 2002, eq. 7) and its cumulative-mean
    # normalisation (eq. 8): d'(0) = 1, d'(tau) = d(tau) tau / sum_{k=1..tau} d(k).
    diff = jnp.maximum(shifted_energy[:, :1] + shifted_energy - 2.0 * corr, 0.0)
    running = jnp.cumsum(diff[:, 1:], axis=-1)
    tau = jnp.arange(1, lags, dtype=diff.dtype)
    tiny = jnp.finfo(diff.dtype).tiny
    cmnd = jnp.where(running > tiny, diff[:, 1:] * tau / jnp.maximum(running, tiny), 1.0)
    cmnd = jnp.concatenate([jnp.ones_like(cmnd[:, :1]), cmnd], axis=-1)  # [T, lag_max + 2]

    centre = cmnd[:, lag_min : lag_max + 1]
    before = cmnd[:, lag_min - 1 : lag_max]
    after = cmnd[:, lag_min + 1 : lag_max + 2]
    trough = (centre < before) & (centre <= after) & (centre < trough_threshold)
    # YIN's absolute threshold: the shortest lag with a dip below the threshold, else the global
    # minimum (which avoids choosing a sub-harmonic period when the frame is periodic).
    best = jnp.where(jnp.any(trough, axis=-1), jnp.argmax(trough, axis=-1), jnp.argmin(centre, axis=-1))
    pick = lambda v: jnp.take_along_axis(v, best[:, None], axis=-1)[:, 0]  # noqa: E731
    a, b, c = pick(before), pick(centre), pick(after)
    curvature = a - 2.0 * b + c
    shift = jnp.where(curvature > tiny, 0.5 * (a - c) / jnp.maximum(curvature, tiny), 0.0)
    shift = jnp.where(jnp.abs(shift) <= 1.0, shift, 0.0)
    period = lag_min + best + shift
    aperiodicity = b - 0.25 * (a - c) * shift
    return period, aperiodicity


@functools.partial(
    jax.jit,
    static_argnames=("preset", "fmin", "fmax", "frame_length", "trough_threshold",
                     "voicing_threshold", "silence_db"),
)
def estimate_f0(
    waveform: jax.Array,
    preset: str | MelPreset = "tts_22k",
    *,
    fmin: float = 75.0,
    fmax: float = 600.0,
    frame_length: int | None = None,
    trough_threshold: float = 0.1,
    voicing_threshold: float = 0.35,
    silence_db: float = -45.0,
) -> tuple[jax.Array, jax.Array]:
    """YIN F0 of ``waveform [..., S]`` -> (f0 ``[..., T]`` Hz, voiced ``[..., T]`` bool).

    T = ``num_frames(S, preset)``, and frame ``t`` is centred on mel frame ``t``'s centre, so
    f0 lines up with ``log_mel(waveform, preset)``. Each frame has ``frame_length`` samples
    (default ``preset.n_fft``; 1024 at 22.05 kHz holds ~3.5 periods of 75 Hz), zero-padded at
    the signal edges. The period is YIN's (de Cheveigné & Kawahara 2002): the shortest lag in
    ``[sr / fmax, sr / fmin]`` whose cumulative-mean-normalised difference dips below
    ``trough_threshold`` (else the global minimum), refined by parabolic interpolation.
    A frame is voiced when that normalised difference (its aperiodicity) is below
    ``voicing_threshold`` and its energy is within ``silence_db`` dB of the loudest frame of
    the same signal. Unvoiced frames have f0 = 0.
    """
    preset = get_preset(preset)
    waveform = jnp.asarray(waveform)
    if waveform.ndim < 1 or not jnp.issubdtype(waveform.dtype, jnp.floating):
        raise ValueError(
            f"waveform must be a float array [..., samples], got {waveform.dtype} {waveform.shape}"
        )
    length, window, lag_min, lag_max = _yin_sizes(preset, fmin, fmax, frame_length)
    if num_frames(waveform.shape[-1], preset) < 1:
        raise ValueError(f"{waveform.shape[-1]} samples is too short for one frame of this preset")
    lead = waveform.shape[:-1]
    flat = waveform.reshape(-1, waveform.shape[-1]).astype(jnp.float32)

    def one(x):
        frames = _frames(x, preset, length)
        period, aperiodicity = _yin(
            frames, window=window, lag_min=lag_min, lag_max=lag_max, trough_threshold=trough_threshold
        )
        power = jnp.mean(jnp.square(frames), axis=-1)
        loud = (power > jnp.max(power) * 10.0 ** (silence_db / 10.0)) & (power > 1e-10)
        voiced = loud & (aperiodicity < voicing_threshold)
        return jnp.where(voiced, preset.sample_rate / period, 0.0), voiced

    f0, voiced = jax.vmap(one)(flat)
    return f0.reshape(*lead, -1), voiced.reshape(*lead, -1)


def _windows(x: jnp.ndarray, width: int, fill) -> jnp.ndarray:
    """``[T] -> [T, width]`` centred sliding windows, ``fill``-padded at the ends."""
    half = width // 2
    padded = jnp.pad(x, (half, half), constant_values=fill)
    return padded[np.arange(x.shape[0])[:, None] + np.arange(width)[None, :]]


def interpolate_gaps(values: jnp.ndarray, known: jnp.ndarray) -> jnp.ndarray:
    """Linear interpolation of ``values [T]`` over frames where ``known`` is False; constant
    extrapolation before the first and after the last known frame; zeros if none is known."""
    index = jnp.arange(values.shape[0])
    prev = jax.lax.cummax(jnp.where(known, index, -1))
    nxt = jax.lax.cummin(jnp.where(known, index, values.shape[0]), reverse=True)
    has_prev, has_next = prev >= 0, nxt < values.shape[0]
    left = values[jnp.clip(prev, 0, values.shape[0] - 1)]
    right = values[jnp.clip(nxt, 0, values.shape[0] - 1)]
    span = jnp.maximum(nxt - prev, 1)
    between = left + (right - left) * (index - prev) / span
    out = jnp.where(has_prev & has_next, between, jnp.where(has_prev, left, right))
    return jnp.where(has_prev | has_next, jnp.where(known, values, out), 0.0)


@functools.partial(jax.jit, static_argnames=("max_octaves",))
def reject_octave_outliers(f0: jax.Array, voiced: jax.Array, *, max_octaves: float = 0.8) -> jax.Array:
    """Voiced mask ``[..., T]`` without frames more than ``max_octaves`` from the signal's median F0.

    Octave (and twelfth) errors of a period detector come in runs a median filter cannot
    remove; speech rarely strays this far from its own median (eSpeak's question rises stay
    within ~0.7 octave). The median is over the voiced frames of each signal (last axis).
    """
    f0, voiced = jnp.asarray(f0), jnp.asarray(voiced)
    chex.assert_equal_shape([f0, voiced])
    if max_octaves <= 0:
        raise ValueError(f"max_octaves must be positive, got {max_octaves}")
    voiced = voiced.astype(bool) & (f0 > 0)
    log_f0 = jnp.log(jnp.where(voiced, f0, 1.0))
    median = jnp.nanmedian(jnp.where(voiced, log_f0, jnp.nan), axis=-1, keepdims=True)
    return voiced & (jnp.abs(log_f0 - median) <= max_octaves * np.log(2.0))


@functools.partial(jax.jit, static_argnames=("median_width", "mean_width", "max_octaves"))
def pitch_contour(
    f0: jax.Array,
    voiced: jax.Array,
    *,
    median_width: int = 5,
    mean_width: int = 5,
    max_octaves: float = 0.8,
) -> jax.Array:
    """ProsodyFM's pitch processor: (f0 ``[..., T]`` Hz, voiced ``[..., T]``) -> log-F0 ``[..., T]``.

    1. ln F0 on voiced frames, minus :func:`reject_octave_outliers` (``max_octaves``);
    2. a median over the voiced frames of each centred ``median_width`` window (removes
    isolated jumps; unvoiced frames stay unvoiced); 3. linear interpolation across unvoiced
    gaps, held constant before the first and after the last voiced frame; 4. a centred
    ``mean_width`` moving average with the end values repeated. Widths are odd frame counts
    (1 disables a step). A signal with no voiced frame gives zeros.
    """
    for name, width in (("median_width", median_width), ("mean_width", mean_width)):
        if width < 1 or width % 2 == 0:
            raise ValueError(f"{name} must be a positive odd number of frames, got {width}")
    f0, voiced = jnp.asarray(f0), jnp.asarray(voiced)
    chex.assert_equal_shape([f0, voiced])
    chex.assert_rank(f0, {1, 2, 3})
    voiced = reject_octave_outliers(f0, voiced, max_octaves=max_octaves)

    def one(f, v):
        log_f0 = jnp.where(v, jnp.log(jnp.where(v, f, 1.0)), jnp.nan)
        log_f0 = jnp.where(v, jnp.nanmedian(_windows(log_f0, median_width, jnp.nan), axis=-1), 0.0)
        filled = interpolate_gaps(log_f0, v)
        half = mean_width // 2
        padded = jnp.pad(filled, (half, half), mode="edge")
        return jnp.convolve(padded, jnp.full((mean_width,), 1.0 / mean_width), mode="valid")

    lead = f0.shape[:-1]
    flat_f0 = f0.reshape(-1, f0.shape[-1]).astype(jnp.float32)
    out = jax.vmap(one)(flat_f0, voiced.reshape(flat_f0.shape))
    return out.reshape(*lead, -1)


@functools.partial(jax.jit, static_argnames=("frame_rate", "window_ms"))
def terminal_slope(
    log_f0: jax.Array,
    mask: jax.Array,
    start: jax.Array,
    end: jax.Array,
    *,
    frame_rate: float,
    window_ms: float = 200.0,
) -> jax.Array:
    """Least-squares slope (ln Hz per second) of ``log_f0 [T]`` over a phrase's last ``window_ms``.

    The phrase spans frames ``[start, end)``; the fit uses its frames in
    ``[max(start, end - window), end)`` where ``mask [T]`` is true (pass the voiced mask to fit
    measured F0 only, or all-true for an interpolated contour). ``frame_rate`` is frames per
    second (sample_rate / hop_length). ``start``/``end`` may be traced, and the function
    vmaps over phrases. Fewer than two usable frames give slope 0.
    """
    log_f0, mask = jnp.asarray(log_f0), jnp.asarray(mask)
    chex.assert_rank([log_f0, mask], 1)
    chex.assert_equal_shape([log_f0, mask])
    window = max(2, int(round(window_ms * frame_rate / 1000.0)))
    index = jnp.arange(log_f0.shape[0])
    weight = (mask.astype(bool) & (index >= jnp.maximum(start, end - window)) & (index < end))
    weight = weight.astype(jnp.float32)
    count = jnp.sum(weight)
    seconds = index / frame_rate
    safe = jnp.maximum(count, 1.0)
    mean_t = jnp.sum(weight * seconds) / safe
    mean_y = jnp.sum(weight * log_f0) / safe
    dt = seconds - mean_t
    spread = jnp.sum(weight * dt * dt)
    slope = jnp.sum(weight * dt * (log_f0 - mean_y)) / jnp.maximum(spread, 1e-12)
    return jnp.where((count >= 2) & (spread > 0), slope, 0.0)


def contour_direction(slope) -> str:
    """``"rising"`` for a positive terminal slope, else ``"falling"``."""
    return "rising" if float(slope) > 0.0 else "falling"
