"""Audio front end: STFT, mel filterbanks, log-mel presets and host-side audio I/O."""

from jaxspeech.audio.features import PRESETS, MelPreset, get_preset, log_mel, num_frames
from jaxspeech.audio.io import AudioError, load_audio, resample, save_audio
from jaxspeech.audio.mel import hz_to_mel, mel_filterbank, mel_to_hz
from jaxspeech.audio.spectral import istft, stft

__all__ = [
    "AudioError",
    "MelPreset",
    "PRESETS",
    "get_preset",
    "hz_to_mel",
    "istft",
    "load_audio",
    "log_mel",
    "mel_filterbank",
    "mel_to_hz",
    "num_frames",
    "resample",
    "save_audio",
    "stft",
]

from jaxspeech.audio.f0 import (
    contour_direction,
    estimate_f0,
    pitch_contour,
    reject_octave_outliers,
    terminal_slope,
)
from jaxspeech.audio.harmonic import harmonic_amplitudes, harmonic_plus_noise, log_mel_f0_to_audio
from jaxspeech.audio.griffin_lim import (
    griffin_lim,
    log_mel_to_audio,
    mel_to_magnitude,
    spectral_convergence,
)

__all__ += [
    "contour_direction",
    "estimate_f0",
    "griffin_lim",
    "harmonic_amplitudes",
    "harmonic_plus_noise",
    "log_mel_f0_to_audio",
    "log_mel_to_audio",
    "mel_to_magnitude",
    "pitch_contour",
    "reject_octave_outliers",
    "spectral_convergence",
    "terminal_slope",
]
