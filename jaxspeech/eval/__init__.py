"""Evaluation metrics: error rates, MCD, prosody (pauses, terminal direction, F0 agreement), RTF,
distribution distances."""

from jaxspeech.eval.distribution import sliced_wasserstein
from jaxspeech.eval.error_rate import error_rates
from jaxspeech.eval.mcd import cepstral_distortion, dtw, mel_cepstral_distortion, mel_cepstrum
from jaxspeech.eval.prosody import (
    comma_pause_mae,
    comma_pauses,
    contour_shares,
    detect_pauses,
    expected_direction,
    f0_agreement,
    intonation_scores,
    judged_directions,
    mel_terminal_direction,
    terminal_direction,
)
from jaxspeech.eval.rtf import real_time_factor, time_call

__all__ = [
    "cepstral_distortion",
    "comma_pause_mae",
    "comma_pauses",
    "contour_shares",
    "detect_pauses",
    "dtw",
    "error_rates",
    "expected_direction",
    "f0_agreement",
    "intonation_scores",
    "judged_directions",
    "mel_cepstral_distortion",
    "mel_cepstrum",
    "mel_terminal_direction",
    "real_time_factor",
    "sliced_wasserstein",
    "terminal_direction",
    "time_call",
]
