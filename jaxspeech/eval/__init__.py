"""Evaluation metrics: error rates, and (later) MCD, F0 and break statistics, RTF."""

from jaxspeech.eval.error_rate import error_rates

__all__ = ["error_rates"]

from jaxspeech.eval.distribution import sliced_wasserstein
from jaxspeech.eval.mcd import cepstral_distortion, dtw, mel_cepstral_distortion, mel_cepstrum
from jaxspeech.eval.prosody import (
    comma_pause_mae,
    comma_pauses,
    detect_pauses,
    expected_direction,
    intonation_scores,
    terminal_direction,
)
from jaxspeech.eval.rtf import real_time_factor, time_call

__all__ += [
    "cepstral_distortion",
    "comma_pause_mae",
    "comma_pauses",
    "detect_pauses",
    "dtw",
    "expected_direction",
    "intonation_scores",
    "mel_cepstral_distortion",
    "mel_cepstrum",
    "real_time_factor",
    "sliced_wasserstein",
    "terminal_direction",
    "time_call",
]
