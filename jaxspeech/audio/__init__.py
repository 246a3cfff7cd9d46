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
