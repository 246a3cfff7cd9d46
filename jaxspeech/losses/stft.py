"""Spectral losses for waveform generators: multi-resolution STFT and log-mel L1, masked.

Multi-resolution STFT loss (Yamamoto et al. 2020, "Parallel WaveGAN", eq. 4-6): at each
resolution ``(n_fft, hop_length, win_length)`` the magnitudes ``|X| = sqrt(max(|STFT|^2, eps))``
of the estimate ``x`` and the target ``y`` give

    spectral convergence  ||  |Y| - |X| ||_F / || |Y| ||_F
    log-magnitude L1      mean | log |Y| - log |X| |

and both are averaged over the resolutions. The mel loss is the L1 distance of the two
signals' log-mels of a :class:`~jaxspeech.audio.MelPreset` (HiFi-GAN's reconstruction loss).

Masking: ``audio_mask [B,S]`` is right-padded (``L`` valid samples). Both signals are zeroed
past ``L``, framed with zero padding and only the frames of a length-``L`` signal count, so
the loss of a padded batch equals the mean over its examples of each example's loss computed
alone on its ``L`` samples: padding length and content change nothing. Every term is a
per-example value (Frobenius ratio, mean over that example's frames and bins), averaged over
the examples with at least one valid sample.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxspeech.audio.features import MelPreset, get_preset, num_frames
from jaxspeech.audio.mel import mel_filterbank
from jaxspeech.audio.spectral import stft

Resolution = tuple[int, int, int]
DEFAULT_RESOLUTIONS: tuple[Resolution, ...] = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))
_HIGHEST = jax.lax.Precision.HIGHEST


def _check_signals(estimate: jax.Array, target: jax.Array, audio_mask: jax.Array) -> None:
    chex.assert_rank([estimate, target, audio_mask], 2)
    chex.assert_equal_shape([estimate, target, audio_mask])
    chex.assert_type(audio_mask, bool)


def _masked_signals(estimate, target, audio_mask):
    """Both signals zeroed past the mask (so garbage, even NaN, in padding never reaches a gradient)."""
    return jnp.where(audio_mask, estimate, 0.0), jnp.where(audio_mask, target, 0.0)


def _per_example_mean(values: jax.Array, present: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(present, values, 0.0)) / jnp.maximum(jnp.sum(present), 1)


def stft_magnitude(x: jax.Array, resolution: Resolution, *, eps: float = 1e-7) -> jax.Array:
    """``sqrt(max(|STFT|^2, eps))`` of ``x [..., S]`` -> ``[..., 1 + S // hop, n_fft // 2 + 1]``.

    Centred frames with zero (constant) padding, periodic Hann window of ``win_length``; the
    ``eps`` floor keeps the log finite and the square root's gradient bounded at silence.
    """
    n_fft, hop_length, win_length = resolution
    spec = stft(x, n_fft=n_fft, hop_length=hop_length, win_length=win_length, center=True, pad_mode="constant")
    return jnp.sqrt(jnp.maximum(jnp.square(spec.real) + jnp.square(spec.imag), eps))


@functools.partial(jax.jit, static_argnames=("resolutions", "eps"))
def multi_resolution_stft_loss(
    estimate: jax.Array,
    target: jax.Array,
    audio_mask: jax.Array,
    *,
    resolutions: tuple[Resolution, ...] = DEFAULT_RESOLUTIONS,
    eps: float = 1e-7,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Spectral convergence + log-magnitude L1, each averaged over ``resolutions``.

    estimate, target: float ``[B,S]``; audio_mask: bool ``[B,S]``, right-padded. ``resolutions``
    is static (hashable): ``(n_fft, hop_length, win_length)`` triples. Returns ``(sc + log_mag, metrics)``
    with metrics ``stft_sc`` and ``stft_log_mag`` (both means over resolutions).
    """
    _check_signals(estimate, target, audio_mask)
    if not resolutions:
        raise ValueError("resolutions is empty: give at least one (n_fft, hop_length, win_length)")
    estimate, target = _masked_signals(estimate, target, audio_mask)
    lengths = jnp.sum(audio_mask, axis=1)
    present = lengths > 0
    convergence, log_magnitude = [], []
    for resolution in resolutions:
        n_fft, hop_length, win_length = (int(v) for v in resolution)
        if not 0 < win_length <= n_fft or hop_length <= 0:
            raise ValueError(f"resolution {resolution} must satisfy 0 < win_length <= n_fft and hop_length > 0")
        mag_estimate = stft_magnitude(estimate, (n_fft, hop_length, win_length), eps=eps)
        mag_target = stft_magnitude(target, (n_fft, hop_length, win_length), eps=eps)
        # Frames of a length-L signal centred with zero padding: 1 + L // hop.
        frame_mask = jnp.arange(mag_target.shape[1])[None, :] < (1 + lengths // hop_length)[:, None]
        frame_mask = frame_mask[..., None]
        difference = jnp.sum(jnp.where(frame_mask, jnp.square(mag_target - mag_estimate), 0.0), axis=(1, 2))
        energy = jnp.sum(jnp.where(frame_mask, jnp.square(mag_target), 0.0), axis=(1, 2))
        convergence.append(_per_example_mean(jnp.sqrt(difference) / jnp.sqrt(jnp.maximum(energy, eps)), present))
        log_error = jnp.where(frame_mask, jnp.abs(jnp.log(mag_target) - jnp.log(mag_estimate)), 0.0)
        cells = jnp.sum(frame_mask, axis=(1, 2)) * mag_target.shape[2]
        log_magnitude.append(_per_example_mean(jnp.sum(log_error, axis=(1, 2)) / jnp.maximum(cells, 1), present))
    sc, log_mag = jnp.mean(jnp.stack(convergence)), jnp.mean(jnp.stack(log_magnitude))
    return sc + log_mag, {"stft_sc": sc, "stft_log_mag": log_mag}


def masked_log_mel(audio: jax.Array, audio_mask: jax.Array, preset: str | MelPreset) -> tuple[jax.Array, jax.Array]:
    """Log-mel of ``audio [B,S]`` past the mask zeroed, framed with zero padding.

    Returns ``(log_mel [B,T,M], mel_mask [B,T])``, ``T = num_frames(S, preset)``, valid frames
    ``num_frames(L, preset)``. The preset's framing, spectrum, filterbank, log, offset and
    scale are used, but its edge padding is zeros, so frames are those of the ``L`` samples
    alone; interior frames equal ``jaxspeech.audio.log_mel``'s. Presets with a per-utterance
    dynamic-range clamp are rejected: that clamp depends on the whole utterance.
    """
    preset = get_preset(preset)
    chex.assert_rank([audio, audio_mask], 2)
    chex.assert_equal_shape([audio, audio_mask])
    if preset.dynamic_range is not None:
        raise ValueError("masked_log_mel does not support presets with a dynamic_range clamp (e.g. Whisper's)")
    audio = jnp.where(audio_mask, audio, 0.0)
    pad = preset.pad_samples
    padded = jnp.pad(audio, ((0, 0), (pad, pad)))
    spec = stft(padded, n_fft=preset.n_fft, hop_length=preset.hop_length, win_length=preset.win_length)
    if preset.drop_last_frame:
        spec = spec[:, :-1]
    energy = jnp.square(spec.real) + jnp.square(spec.imag) + preset.magnitude_eps
    if preset.power != 2.0:
        energy = energy ** (preset.power / 2.0)
    filterbank = mel_filterbank(
        sample_rate=preset.sample_rate, n_fft=preset.n_fft, n_mels=preset.n_mels, fmin=preset.fmin,
        fmax=preset.fmax, scale=preset.mel_scale, norm=preset.mel_norm,
    )
    mel = jnp.matmul(energy, jnp.asarray(np.asarray(filterbank), energy.dtype), precision=_HIGHEST)
    log = jnp.log if preset.log == "ln" else jnp.log10
    features = (log(jnp.maximum(mel, preset.log_floor)) + preset.log_offset) / preset.log_scale
    valid = num_frames(jnp.sum(audio_mask, axis=1).astype(jnp.int32), preset)
    return features, jnp.arange(features.shape[1])[None, :] < valid[:, None]


@functools.partial(jax.jit, static_argnames=("preset",))
def mel_l1_loss(
    estimate: jax.Array, target: jax.Array, audio_mask: jax.Array, *, preset: str | MelPreset = "tts_22k"
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean |log-mel(estimate) - log-mel(target)| (see :func:`masked_log_mel`), per example, averaged.

    estimate, target: float ``[B,S]`` at ``preset.sample_rate``; audio_mask: bool ``[B,S]``,
    right-padded; ``preset`` is static. Returns ``(loss, {"mel_l1": loss})``. Examples too
    short for one frame weigh 0.
    """
    _check_signals(estimate, target, audio_mask)
    mel_estimate, frame_mask = masked_log_mel(estimate, audio_mask, preset)
    mel_target, _ = masked_log_mel(target, audio_mask, preset)
    error = jnp.where(frame_mask[..., None], jnp.abs(mel_target - mel_estimate), 0.0)
    frames = jnp.sum(frame_mask, axis=1)
    per_example = jnp.sum(error, axis=(1, 2)) / (jnp.maximum(frames, 1) * mel_target.shape[2])
    loss = _per_example_mean(per_example, frames > 0)
    return loss, {"mel_l1": loss}
