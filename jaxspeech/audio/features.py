"""Log-mel features with named presets matching the conventions models were trained on.

``log_mel(waveform, "tts_22k")`` reproduces HiFi-GAN / Matcha-TTS's ``mel_spectrogram``;
``log_mel(waveform, "vocos_24k")`` Vocos' 24 kHz ``MelSpectrogramFeatures`` (torchaudio defaults);
``log_mel(waveform, "whisper_80" | "whisper_128", pad_or_trim=True)`` reproduces Whisper's
``log_mel_spectrogram(pad_or_trim(audio))`` (and transformers' WhisperFeatureExtractor).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxspeech.audio.mel import mel_filterbank
from jaxspeech.audio.spectral import stft

_PADDINGS = ("center", "half_overlap")
_LOGS = ("ln", "log10")


@dataclasses.dataclass(frozen=True)
class MelPreset:
    """Everything that fixes a log-mel feature: framing, spectrum, filterbank and log.

    Attributes:
      sample_rate: rate (Hz) the waveform must already be at.
      n_fft, hop_length, win_length: STFT sizes; periodic Hann window of ``win_length``.
      n_mels, fmin, fmax, mel_scale, mel_norm: see :func:`jaxspeech.audio.mel_filterbank`.
      padding: ``"center"`` pads ``n_fft // 2`` samples on both sides (torch/librosa
        ``center=True``, Whisper); ``"half_overlap"`` pads ``(n_fft - hop_length) // 2``
        on both sides and frames without centring (HiFi-GAN, Matcha).
      pad_mode: ``jnp.pad`` mode of that padding.
      drop_last_frame: drop the final STFT frame (Whisper does, so 30 s gives 3000 frames).
      power: spectrum is ``(|X|^2 + magnitude_eps) ** (power / 2)``; 1 magnitude, 2 power.
      magnitude_eps: added to ``|X|^2`` before the power (HiFi-GAN uses 1e-9, which also
        keeps the gradient of the square root finite at silence).
      log: ``"ln"`` or ``"log10"`` of ``max(mel, log_floor)``.
      log_floor: clamp applied before the log.
      dynamic_range: if set, the log-mel is clamped from below at its per-example maximum
        (over frames and mels) minus this (Whisper: 8, i.e. 80 dB).
      log_offset, log_scale: the result is ``(log_mel + log_offset) / log_scale``.
      pad_or_trim_samples: length ``log_mel(..., pad_or_trim=True)`` zero-pads or trims the
        waveform to (Whisper: 30 s); ``None`` where the model has no fixed window.
    """

    sample_rate: int
    n_fft: int
    hop_length: int
    win_length: int
    n_mels: int
    fmin: float
    fmax: float | None
    mel_scale: str
    mel_norm: str | None
    padding: str
    pad_mode: str
    drop_last_frame: bool
    power: float
    magnitude_eps: float
    log: str
    log_floor: float
    dynamic_range: float | None
    log_offset: float
    log_scale: float
    pad_or_trim_samples: int | None

    def __post_init__(self):
        if self.padding not in _PADDINGS:
            raise ValueError(f"padding must be one of {_PADDINGS}, got {self.padding!r}")
        if self.log not in _LOGS:
            raise ValueError(f"log must be one of {_LOGS}, got {self.log!r}")
        if self.power <= 0 or self.log_floor <= 0 or self.log_scale == 0:
            raise ValueError("power and log_floor must be positive and log_scale non-zero")

    @property
    def pad_samples(self) -> int:
        """Samples padded on each side of the waveform before framing."""
        if self.padding == "center":
            return self.n_fft // 2
        return (self.n_fft - self.hop_length) // 2


def _whisper(n_mels: int) -> MelPreset:
    return MelPreset(
        sample_rate=16000,
        n_fft=400,
        hop_length=160,
        win_length=400,
        n_mels=n_mels,
        fmin=0.0,
        fmax=8000.0,
        mel_scale="slaney",
        mel_norm="slaney",
        padding="center",
        pad_mode="reflect",
        drop_last_frame=True,
        power=2.0,
        magnitude_eps=0.0,
        log="log10",
        log_floor=1e-10,
        dynamic_range=8.0,
        log_offset=4.0,
        log_scale=4.0,
        pad_or_trim_samples=30 * 16000,
    )


PRESETS: dict[str, MelPreset] = {
    "tts_22k": MelPreset(
        sample_rate=22050,
        n_fft=1024,
        hop_length=256,
        win_length=1024,
        n_mels=80,
        fmin=0.0,
        fmax=8000.0,
        mel_scale="slaney",
        mel_norm="slaney",
        padding="half_overlap",
        pad_mode="reflect",
        drop_last_frame=False,
        power=1.0,
        magnitude_eps=1e-9,
        log="ln",
        log_floor=1e-5,
        dynamic_range=None,
        log_offset=0.0,
        log_scale=1.0,
        pad_or_trim_samples=None,
    ),
    # Vocos' 24 kHz mel vocoder (charactr/vocos-mel-24khz; F5-TTS): torchaudio's MelSpectrogram defaults
    # (HTK scale, no filter normalisation, centred reflect padding) on magnitudes, ln(max(x, 1e-7)).
    "vocos_24k": MelPreset(
        sample_rate=24000,
        n_fft=1024,
        hop_length=256,
        win_length=1024,
        n_mels=100,
        fmin=0.0,
        fmax=None,
        mel_scale="htk",
        mel_norm=None,
        padding="center",
        pad_mode="reflect",
        drop_last_frame=False,
        power=1.0,
        magnitude_eps=0.0,
        log="ln",
        log_floor=1e-7,
        dynamic_range=None,
        log_offset=0.0,
        log_scale=1.0,
        pad_or_trim_samples=None,
    ),
    "whisper_80": _whisper(80),
    "whisper_128": _whisper(128),
}
# tts_22k with 128 filters: 23 Hz apart below 1 kHz instead of 37, so harmonics down to 47 Hz are resolved
# (audio.pitch_comb.lowest_resolved_f0; 75 Hz at 80 filters, above the 60 Hz where low voices end statements).
PRESETS["tts_22k_128"] = dataclasses.replace(PRESETS["tts_22k"], n_mels=128)


def get_preset(name_or_preset: str | MelPreset) -> MelPreset:
    """Return the preset named ``name_or_preset`` (or the MelPreset itself)."""
    if isinstance(name_or_preset, MelPreset):
        return name_or_preset
    if name_or_preset not in PRESETS:
        raise ValueError(
            f"unknown mel preset {name_or_preset!r}; known presets: {', '.join(sorted(PRESETS))}"
        )
    return PRESETS[name_or_preset]


def num_frames(num_samples, preset: str | MelPreset, *, pad_or_trim: bool = False):
    """Frames ``log_mel`` gives for ``num_samples`` samples.

    ``num_samples`` is a python int (returns int), a numpy int array (returns numpy) or a
    jax int array (returns jax, jit-safe); use it to build ``mel_mask`` from audio lengths.
    Lengths too short for one frame give 0 (``log_mel`` itself rejects them).
    """
    preset = get_preset(preset)
    xp = jnp if isinstance(num_samples, jax.Array) else np
    samples = xp.asarray(num_samples)
    if not xp.issubdtype(samples.dtype, xp.integer):
        raise ValueError(f"num_samples must be integers, got dtype {samples.dtype}")
    if pad_or_trim:
        _check_pad_or_trim(preset)
        samples = xp.full_like(samples, preset.pad_or_trim_samples)
    padded = samples + 2 * preset.pad_samples
    frames = 1 + (padded - preset.n_fft) // preset.hop_length - int(preset.drop_last_frame)
    frames = xp.maximum(frames, 0)
    return int(frames) if isinstance(num_samples, int) else frames


def _check_pad_or_trim(preset: MelPreset) -> None:
    if preset.pad_or_trim_samples is None:
        raise ValueError(
            "pad_or_trim=True needs a preset with a fixed window (pad_or_trim_samples)"
        )


def _preset_filterbank(preset: MelPreset) -> np.ndarray:
    with warnings.catch_warnings():
        # Whisper large-v3's 128-mel bank at n_fft=400 has empty channels by design; the
        # presets reproduce what the models were trained on, so the warning is noise here.
        warnings.simplefilter("ignore", UserWarning)
        return mel_filterbank(
            sample_rate=preset.sample_rate,
            n_fft=preset.n_fft,
            n_mels=preset.n_mels,
            fmin=preset.fmin,
            fmax=preset.fmax,
            scale=preset.mel_scale,
            norm=preset.mel_norm,
        )


@functools.partial(jax.jit, static_argnames=("preset", "pad_or_trim"))
def log_mel(
    waveform: jax.Array, preset: str | MelPreset, *, pad_or_trim: bool = False
) -> jax.Array:
    """Log-mel features of ``waveform [..., samples]`` -> float32 ``[..., frames, n_mels]``.

    ``waveform`` must be at ``preset.sample_rate``; frames = ``num_frames(samples, preset)``.
    ``pad_or_trim=True`` first zero-pads or trims the last axis to
    ``preset.pad_or_trim_samples`` (Whisper's 30 s window -> 3000 frames); presets without a
    fixed window raise. Jitted with ``preset`` and ``pad_or_trim`` static (a preset name or a
    frozen MelPreset are both hashable), so one compile serves each (preset, shape).
    """
    preset = get_preset(preset)
    waveform = jnp.asarray(waveform)
    if waveform.ndim < 1 or not jnp.issubdtype(waveform.dtype, jnp.floating):
        raise ValueError(
            f"waveform must be a float array [..., samples], got {waveform.dtype} {waveform.shape}"
        )
    waveform = waveform.astype(jnp.float32)
    if pad_or_trim:
        _check_pad_or_trim(preset)
        target = preset.pad_or_trim_samples
        waveform = waveform[..., :target]
        waveform = jnp.pad(
            waveform, [(0, 0)] * (waveform.ndim - 1) + [(0, target - waveform.shape[-1])]
        )
    if num_frames(waveform.shape[-1], preset) < 1 or waveform.shape[-1] <= preset.pad_samples:
        raise ValueError(
            f"{waveform.shape[-1]} samples is too short for preset with n_fft={preset.n_fft} "
            f"and {preset.pad_samples} samples of {preset.pad_mode} padding"
        )
    pad = preset.pad_samples
    waveform = jnp.pad(
        waveform, [(0, 0)] * (waveform.ndim - 1) + [(pad, pad)], mode=preset.pad_mode
    )
    spec = stft(
        waveform,
        n_fft=preset.n_fft,
        hop_length=preset.hop_length,
        win_length=preset.win_length,
        center=False,
    )
    if preset.drop_last_frame:
        spec = spec[..., :-1, :]
    energy = jnp.square(spec.real) + jnp.square(spec.imag) + preset.magnitude_eps
    if preset.power != 2.0:
        energy = energy ** (preset.power / 2.0)
    mel = jnp.matmul(
        energy, jnp.asarray(_preset_filterbank(preset)), precision=jax.lax.Precision.HIGHEST
    )
    log = jnp.log if preset.log == "ln" else jnp.log10
    features = log(jnp.maximum(mel, preset.log_floor))
    if preset.dynamic_range is not None:
        peak = jnp.max(features, axis=(-2, -1), keepdims=True)
        features = jnp.maximum(features, peak - preset.dynamic_range)
    return (features + preset.log_offset) / preset.log_scale
