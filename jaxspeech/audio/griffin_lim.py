"""Griffin-Lim phase reconstruction in jnp: the zero-training vocoder for log-mel presets.

``log_mel_to_audio(log_mel, "tts_22k")`` undoes the preset's log and mel projection
(non-negative least squares, :func:`mel_to_magnitude`) and recovers a phase with fast
Griffin-Lim (:func:`griffin_lim`, Perraudin, Balazs & Søndergaard 2013, in librosa's
parameterisation). Everything is jit-compiled with static iteration counts.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxspeech.audio.features import MelPreset, _preset_filterbank, get_preset
from jaxspeech.audio.spectral import istft, stft

_HIGHEST = jax.lax.Precision.HIGHEST


def _mel_inverse_operators(preset: MelPreset):
    """(filterbank [K, M], its pseudo-inverse [M, K], 1 / Lipschitz constant of the NNLS grad)."""
    fb = _preset_filterbank(preset).astype(np.float64)
    return (
        fb.astype(np.float32),
        np.linalg.pinv(fb).astype(np.float32),
        np.float32(1.0 / np.linalg.norm(fb, 2) ** 2),
    )


@functools.partial(jax.jit, static_argnames=("preset", "nnls_iterations"))
def mel_to_magnitude(
    log_mel: jax.Array, preset: str | MelPreset = "tts_22k", *, nnls_iterations: int = 100
) -> jax.Array:
    """Linear STFT magnitude ``[..., T, n_fft // 2 + 1]`` whose log-mel is ``log_mel [..., T, M]``.

    Undoes the preset's scale, offset and log, then solves ``spectrum @ filterbank = mel`` for a
    non-negative spectrum (magnitude ** preset.power) per frame: the clipped pseudo-inverse
    solution, refined by ``nnls_iterations`` steps of accelerated projected gradient (FISTA) on
    the least-squares error (librosa's ``mel_to_stft`` solves the same problem with L-BFGS-B).
    ``nnls_iterations=0`` returns the clipped pseudo-inverse. Bins above ``preset.fmax`` get 0.
    """
    preset = get_preset(preset)
    log_mel = jnp.asarray(log_mel, jnp.float32)
    if log_mel.ndim < 2 or log_mel.shape[-1] != preset.n_mels:
        raise ValueError(
            f"log_mel must be [..., frames, {preset.n_mels}] for this preset, got {log_mel.shape}"
        )
    if nnls_iterations < 0:
        raise ValueError(f"nnls_iterations must be >= 0, got {nnls_iterations}")
    fb, fb_pinv, step = (jnp.asarray(a) for a in _mel_inverse_operators(preset))
    log_value = log_mel * preset.log_scale - preset.log_offset
    mel = jnp.exp(log_value) if preset.log == "ln" else jnp.power(10.0, log_value)

    solution = jnp.maximum(jnp.matmul(mel, fb_pinv, precision=_HIGHEST), 0.0)

    def fista(i, carry):
        current, previous = carry
        momentum = i / (i + 3.0)
        probe = current + momentum * (current - previous)
        residual = jnp.matmul(probe, fb, precision=_HIGHEST) - mel
        grad = jnp.matmul(residual, fb.T, precision=_HIGHEST)
        return jnp.maximum(probe - step * grad, 0.0), current

    solution, _ = jax.lax.fori_loop(0, nnls_iterations, fista, (solution, solution))
    return solution if preset.power == 1.0 else jnp.power(solution, 1.0 / preset.power)


@functools.partial(jax.jit, static_argnames=("n_fft", "hop_length", "win_length", "n_iter"))
def griffin_lim(
    magnitude: jax.Array,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    n_iter: int = 32,
    momentum: float = 0.99,
    key: jax.Array | None = None,
    phase: jax.Array | None = None,
    anchor: jax.Array | None = None,
    anchor_weight: jax.Array | float = 1.0,
) -> jax.Array:
    """Fast Griffin-Lim: a waveform whose STFT magnitude approximates ``magnitude [..., T, K]``.

    Framing is ``stft(center=False)`` with a periodic Hann window, so the result has
    ``(T - 1) * hop_length + n_fft`` samples. Each of the ``n_iter`` iterations projects onto
    consistent spectrograms (istft then stft), extrapolates by ``momentum / (1 + momentum)``
    times the previous projection (librosa.griffinlim's form of Perraudin et al.'s
    acceleration; 0 gives plain Griffin & Lim 1984) and imposes ``magnitude``. The initial
    phase is zero, uniform in [0, 2 pi) drawn from ``key``, or ``phase`` (radians, the shape of
    ``magnitude``; e.g. the phase of another vocoder's output, which the iterations then refine).

    anchor: a complex STFT ``[..., T, K]`` the result keeps where ``anchor_weight`` (in [0, 1],
    broadcast against it) is 1: every iteration ends with ``w * anchor + (1 - w) * spectrum``, so
    the free part's phase is fitted to the held part's (a crossover without a seam).
    """
    magnitude = jnp.asarray(magnitude, jnp.float32)
    if magnitude.ndim < 2 or magnitude.shape[-1] != n_fft // 2 + 1:
        raise ValueError(f"magnitude must be [..., frames, {n_fft // 2 + 1}], got {magnitude.shape}")
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    if key is not None and phase is not None:
        raise ValueError("give a random key or an initial phase, not both")
    sizes = dict(n_fft=n_fft, hop_length=hop_length, win_length=win_length)
    if key is not None:
        phase = jax.random.uniform(key, magnitude.shape, jnp.float32, 0.0, 2.0 * jnp.pi)
    if phase is None:
        spec = magnitude.astype(jnp.complex64)
    else:
        chex.assert_equal_shape([magnitude, phase])
        spec = magnitude * jnp.exp(1j * jnp.asarray(phase, jnp.float32))
    tiny = jnp.finfo(jnp.float32).tiny
    weight = momentum / (1.0 + momentum)
    if anchor is not None:
        chex.assert_equal_shape([magnitude, anchor])

    def hold(spec):
        return spec if anchor is None else anchor_weight * anchor + (1.0 - anchor_weight) * spec

    def iterate(_, carry):
        spec, previous = carry
        rebuilt = stft(istft(spec, **sizes), **sizes)
        spec = rebuilt - weight * previous
        return hold(magnitude * spec / (jnp.abs(spec) + tiny)), rebuilt

    spec, _ = jax.lax.fori_loop(0, n_iter, iterate, (hold(spec), jnp.zeros_like(spec)))
    return istft(spec, **sizes)


@functools.partial(jax.jit, static_argnames=("preset", "n_iter", "nnls_iterations"))
def log_mel_to_audio(
    log_mel: jax.Array,
    preset: str | MelPreset = "tts_22k",
    *,
    n_iter: int = 32,
    momentum: float = 0.99,
    key: jax.Array | None = None,
    nnls_iterations: int = 100,
) -> jax.Array:
    """Griffin-Lim vocoder: ``log_mel [..., T, M]`` of ``preset`` -> waveform ``[..., T * hop]``.

    :func:`mel_to_magnitude` then :func:`griffin_lim` with the preset's STFT sizes; the
    preset's edge padding is cut off, so a waveform of S samples comes back with
    ``T * hop_length`` samples (S rounded down to a multiple of the hop for "tts_22k").
    """
    preset = get_preset(preset)
    magnitude = mel_to_magnitude(log_mel, preset, nnls_iterations=nnls_iterations)
    padded = griffin_lim(
        magnitude, n_fft=preset.n_fft, hop_length=preset.hop_length,
        win_length=preset.win_length, n_iter=n_iter, momentum=momentum, key=key,
    )
    start = preset.pad_samples
    return padded[..., start : start + magnitude.shape[-2] * preset.hop_length]


def spectral_convergence(target: jax.Array, estimate: jax.Array) -> jax.Array:
    """``||target - estimate||_F / ||target||_F`` over the last two axes of magnitudes ``[..., T, K]``."""
    target, estimate = jnp.asarray(target), jnp.asarray(estimate)
    chex.assert_equal_shape([target, estimate])
    num = jnp.sqrt(jnp.sum(jnp.square(target - estimate), axis=(-2, -1)))
    return num / jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(target), axis=(-2, -1))), 1e-12)
