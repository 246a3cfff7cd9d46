"""iSTFT vocoder (Vocos style): log-mel [B,T,F] -> waveform [B,T*hop] via predicted magnitude and phase.

Siuzdak 2024, "Vocos: Closing the gap between time-domain and Fourier-based neural vocoders":
a ConvNeXt backbone at the mel frame rate predicts, per frame, a log-magnitude and a phase
for every bin of an ``n_fft``-point spectrum (hop = the mel preset's hop); an inverse STFT
with "same" padding turns them into exactly ``T * hop`` samples. Head frame ``t`` covers samples
``[t*hop - (n_fft-hop)/2, t*hop + (n_fft+hop)/2)``,
the span of mel frame ``t`` of the "tts_22k" preset (HiFi-GAN framing), so feeding the true
magnitude and phase of those frames reproduces the waveform exactly. The phase is ``p`` as
``cos p + i sin p`` (Vocos); the magnitude ``exp(log_mag)`` is clipped at 100 as in Vocos.
Its losses (multi-resolution STFT and log-mel L1, optionally adversarial) are in
``jaxspeech.models.neural_vocoder``.

Config fields (``default_config()`` lists them):
  preset            mel preset of the input (its n_mels, hop and sample rate)
  n_mels            mel bins (must equal the preset's)
  dim               backbone width
  intermediate_dim  ConvNeXt MLP width
  num_layers        ConvNeXt blocks
  kernel_size       depthwise convolution taps (odd)
  n_fft             head FFT size (n_fft - hop must be even)
  source            "none", or "mel_f0": source-filter phase (below)

Source-filter input (``source="mel_f0"``, NSF's idea in the spectral domain): the pitch is read off the
input mel itself (:func:`jaxspeech.audio.pitch_comb.mel_f0`), a unit-amplitude harmonic excitation at that
F0 is made where it is voiced (:func:`jaxspeech.audio.harmonic.harmonic_excitation`) and its STFT, in the
head's own framing, gives each bin a phase; the network's phase is added to it (bins where the excitation is
silent keep the network's phase alone). So voiced frames get harmonics at the read pitch, coherent from frame
to frame, and the network learns the filter's magnitude and a phase correction: with a zero correction and the
excitation's own magnitude the head rebuilds the excitation exactly. The vocoder stays a mel -> waveform
function; its pitch is whatever pitch the mel carries (resolved below ``lowest_resolved_f0``: use a preset
such as "tts_22k_128" for low voices).

Padding: frames are right-padded with ``mel_mask`` False. Hidden states are zeroed at padded
frames before every layer that mixes frames, padded frames get zero spectrum, the overlap-add
is normalised by the window envelope of the valid frames only and samples past
``valid_frames * hop`` are zero: a padded batch vocodes each example exactly as it would alone.

Vocos checkpoints import into it: ``jaxspeech.models.vocos_import``.

Pure form: ``graphdef, params = init(config, key)``, ``apply(graphdef, params, mel, mel_mask)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxspeech.audio.features import MelPreset, get_preset
from jaxspeech.audio.harmonic import harmonic_excitation
from jaxspeech.audio.pitch_comb import mel_f0
from jaxspeech.audio.spectral import istft, stft, window_function
from jaxspeech.nn.depthwise_conv import ConvNeXtBlock

_MAX_LOG_MAGNITUDE = math.log(1e2)
SOURCES = ("none", "mel_f0")
_SILENT_BIN = 1e-3  # excitation STFT magnitudes below this (a unit harmonic peaks near n_fft / 4) carry no phase


def default_config() -> ml_collections.ConfigDict:
    """A small Vocos (0.8M parameters) for "tts_22k" log-mels, n_fft 1024."""
    return ml_collections.ConfigDict(
        dict(
            preset="tts_22k",
            n_mels=80,
            dim=128,
            intermediate_dim=384,
            num_layers=6,
            kernel_size=7,
            n_fft=1024,
            source="none",
        )
    )


def _field(config: Mapping[str, Any], name: str, where: str = "config") -> Any:
    try:
        return config[name]
    except KeyError:
        raise KeyError(f"{where} has no field {name!r}") from None


def _valid_frame_envelope(frame_mask: jax.Array, n_fft: int, hop: int) -> tuple[np.ndarray, jax.Array]:
    """Overlap-added squared Hann window of all frames ``[N]`` and of the valid frames ``[B,N]``.

    N = (T - 1) * hop + n_fft. Sample ``n`` is covered by frames ``n // hop - j``,
    ``j < ceil(n_fft / hop)``, at window offset ``n - frame * hop``; the index tables are static.
    """
    frames = frame_mask.shape[1]
    squared = window_function("hann", n_fft, n_fft) ** 2
    sample = np.arange((frames - 1) * hop + n_fft)
    frame = sample[:, None] // hop - np.arange(-(-n_fft // hop))[None, :]
    offset = sample[:, None] - frame * hop
    covers = (frame >= 0) & (frame < frames) & (offset < n_fft)
    weight = np.where(covers, squared[np.clip(offset, 0, n_fft - 1)], 0.0)
    valid = frame_mask[:, np.clip(frame, 0, frames - 1)]
    return weight.sum(axis=1), jnp.sum(jnp.where(valid, jnp.asarray(weight, jnp.float32), 0.0), axis=2)


def istft_head(
    magnitude: jax.Array, phase: jax.Array, frame_mask: jax.Array, *, n_fft: int, hop_length: int
) -> jax.Array:
    """Waveform ``[B, T*hop]`` from per-frame ``magnitude``, ``phase`` ``[B,T,n_fft//2+1]``.

    Least-squares inverse STFT (``jaxspeech.audio.istft``, periodic Hann of ``n_fft``) with
    "same" padding: ``(n_fft - hop) / 2`` samples are cut from each end. The overlap-add is
    normalised by the envelope of the valid frames of ``frame_mask [B,T]`` (right-padded), and
    samples past ``valid * hop`` are zero, so padded frames change nothing.
    """
    chex.assert_rank([magnitude, phase, frame_mask], [3, 3, 2])
    chex.assert_equal_shape([magnitude, phase])
    chex.assert_type(frame_mask, bool)
    if magnitude.shape[-1] != n_fft // 2 + 1:
        raise ValueError(f"magnitude has {magnitude.shape[-1]} bins, n_fft={n_fft} needs {n_fft // 2 + 1}")
    if (n_fft - hop_length) % 2 or n_fft < hop_length:
        raise ValueError(f"'same' padding needs n_fft >= hop and n_fft - hop even, got {n_fft}, {hop_length}")
    keep = frame_mask[..., None]
    spectrum = jnp.where(keep, magnitude, 0.0) * jax.lax.complex(jnp.cos(phase), jnp.sin(phase))
    audio = istft(spectrum, n_fft=n_fft, hop_length=hop_length, center=False)
    # istft divides by the envelope of all T frames; padded frames must not count in it.
    full, valid = _valid_frame_envelope(frame_mask, n_fft, hop_length)
    tiny = np.finfo(np.float32).tiny
    audio = jnp.where(valid > tiny, audio * jnp.asarray(full, jnp.float32) / jnp.maximum(valid, tiny), 0.0)
    pad, frames = (n_fft - hop_length) // 2, frame_mask.shape[1]
    audio = audio[:, pad : pad + frames * hop_length]
    valid_samples = jnp.sum(frame_mask, axis=1, keepdims=True) * hop_length
    return jnp.where(jnp.arange(frames * hop_length)[None, :] < valid_samples, audio, 0.0)


def excitation_spectrum(f0: jax.Array, voiced: jax.Array, frame_mask: jax.Array, *, preset: MelPreset,
                        n_fft: int) -> jax.Array:
    """The STFT ``[B,T,n_fft//2+1]`` (complex) of :func:`harmonic_excitation` at ``f0 [B,T]`` Hz where
    ``voiced [B,T]``, frame t in the head's framing (:func:`istft_head`). Beyond each row's last valid frame
    of ``frame_mask`` the last valid frame's F0 and voicing are held, as they are past the end of a row
    vocoded alone, so padding changes no valid frame."""
    chex.assert_rank([f0, voiced, frame_mask], 2)
    last = jnp.maximum(jnp.sum(frame_mask, axis=1, keepdims=True) - 1, 0)
    held = jnp.minimum(jnp.arange(f0.shape[1])[None, :], last)
    f0, voiced = (jnp.take_along_axis(x, held, axis=1) for x in (f0, voiced))
    excitation = harmonic_excitation(f0, voiced, sample_rate=preset.sample_rate, n_fft=n_fft,
                                     hop_length=preset.hop_length)
    return stft(excitation, n_fft=n_fft, hop_length=preset.hop_length)


def source_phase(mel: jax.Array, mel_mask: jax.Array, preset: MelPreset, *, n_fft: int) -> jax.Array:
    """The phase ``[B,T,n_fft//2+1]`` of the harmonic excitation at the pitch read off ``mel [B,T,F]``
    (:func:`jaxspeech.audio.pitch_comb.mel_f0`; padded frames of ``mel_mask`` read as silence), 0 in bins
    where the excitation is silent. A constant of the input: no gradient flows through it."""
    mel = jax.lax.stop_gradient(jnp.where(mel_mask[..., None], mel, 0.0))
    f0, voiced = mel_f0(mel, preset)
    spectrum = excitation_spectrum(f0, voiced & mel_mask, mel_mask, preset=preset, n_fft=n_fft)
    return jnp.where(jnp.abs(spectrum) > _SILENT_BIN, jnp.angle(spectrum), 0.0)


class Vocoder(nnx.Module):
    """Conv embed -> LayerNorm -> ConvNeXt blocks -> LayerNorm -> Linear(n_fft + 2) -> istft_head."""

    def __init__(self, config: Mapping[str, Any], *, rngs: nnx.Rngs):
        preset = get_preset(_field(config, "preset"))
        n_mels, dim, intermediate_dim, num_layers, kernel_size, n_fft = (
            _field(config, name) for name in ("n_mels", "dim", "intermediate_dim", "num_layers", "kernel_size", "n_fft")
        )
        if n_mels != preset.n_mels:
            raise ValueError(f"n_mels={n_mels} but preset {config['preset']!r} has {preset.n_mels} mel bins")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so the convolution is centred, got {kernel_size}")
        if n_fft < preset.hop_length or (n_fft - preset.hop_length) % 2:
            raise ValueError(f"n_fft={n_fft} must be >= hop {preset.hop_length} with n_fft - hop even")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        source = config.get("source", "none")  # imported Vocos configs have none
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        self.n_fft, self.hop_length, self.preset, self.source = n_fft, preset.hop_length, preset, source
        self.embed = nnx.Conv(n_mels, dim, kernel_size=(kernel_size,), padding="SAME", rngs=rngs)
        self.embed_norm = nnx.LayerNorm(dim, rngs=rngs)
        self.blocks = nnx.List(
            [ConvNeXtBlock(dim, intermediate_dim, kernel_size, 1.0 / num_layers, rngs=rngs) for _ in range(num_layers)]
        )
        self.final_norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, n_fft + 2, rngs=rngs)

    def spectrum(self, mel: jax.Array, mel_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(log_magnitude, phase), each ``[B,T,n_fft//2+1]`` float32, from mel [B,T,F], mel_mask [B,T]."""
        chex.assert_rank([mel, mel_mask], [3, 2])
        chex.assert_type(mel_mask, bool)
        mask = mel_mask[..., None]
        x = self.embed_norm(self.embed(jnp.where(mask, mel, 0.0)))
        for block in self.blocks:
            x = block(x, mel_mask)
        log_magnitude, phase = jnp.split(self.head(self.final_norm(x)).astype(jnp.float32), 2, axis=-1)
        return log_magnitude, phase

    def __call__(self, mel: jax.Array, mel_mask: jax.Array) -> jax.Array:
        """Waveform ``[B, T*hop]`` float32; zero past each example's valid frames."""
        log_magnitude, phase = self.spectrum(mel, mel_mask)
        if self.source == "mel_f0":
            phase = phase + source_phase(mel, mel_mask, self.preset, n_fft=self.n_fft)
        magnitude = jnp.exp(jnp.minimum(log_magnitude, _MAX_LOG_MAGNITUDE))
        return istft_head(magnitude, phase, mel_mask, n_fft=self.n_fft, hop_length=self.hop_length)


def init(config: Mapping[str, Any], key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Builds a Vocoder and splits it into (graphdef, params)."""
    return nnx.split(Vocoder(config, rngs=nnx.Rngs(params=key)), nnx.Param)


def apply(graphdef: nnx.GraphDef, params: nnx.State, mel: jax.Array, mel_mask: jax.Array) -> jax.Array:
    """Pure forward pass: mel [B,T,F], mel_mask [B,T] bool -> audio [B, T*hop].

    ``graphdef`` is static: ``jax.jit(functools.partial(apply, graphdef))``.
    """
    return nnx.merge(graphdef, params)(mel, mel_mask)
