import numpy as np
import pytest

from jaxspeech import audio
from jaxspeech.audio.pitch_comb import (
    harmonic_comb_mel,
    mel_ripple,
    resolved_filters,
    ripple_agreement,
    ripple_depth,
)

PRESET = audio.get_preset("tts_22k")


def _harmonic_log_mel(f0: float, seconds: float = 0.5) -> np.ndarray:
    """log-mel [T, M] of equal-amplitude harmonics of f0 up to 4 kHz."""
    t = np.arange(int(seconds * PRESET.sample_rate)) / PRESET.sample_rate
    wave = sum(np.cos(2 * np.pi * h * f0 * t) for h in range(1, int(4000 // f0) + 1))
    return np.asarray(audio.log_mel(0.05 * wave.astype(np.float32), PRESET))


@pytest.mark.parametrize("f0", [110.0, 180.0])
def test_the_comb_predicts_the_ripple_of_a_harmonic_signal_and_only_at_its_pitch(f0):
    log_mel = _harmonic_log_mel(f0)[4:-4]  # steady frames

    def agreement(pitch):
        return ripple_agreement(log_mel, np.full(log_mel.shape[0], pitch), PRESET)

    assert agreement(f0) > 0.8
    assert agreement(f0 * 1.06) < agreement(f0) - 0.3  # a semitone off: the peaks move to other filters
    assert abs(agreement(f0 * 1.5)) < 0.3


def test_filters_on_and_between_harmonics_and_unresolved_ones():
    f0 = 200.0
    frequencies = np.fft.rfftfreq(PRESET.n_fft, 1 / PRESET.sample_rate)
    filters = audio.mel_filterbank(sample_rate=PRESET.sample_rate, n_fft=PRESET.n_fft, n_mels=PRESET.n_mels,
                                   fmin=PRESET.fmin, fmax=PRESET.fmax, scale=PRESET.mel_scale, norm=PRESET.mel_norm)
    centres = frequencies[np.argmax(filters, axis=0)]
    comb = np.asarray(harmonic_comb_mel(np.array([f0]), PRESET))[0]
    on = [np.argmin(np.abs(centres - h * f0)) for h in (1, 2, 3)]
    between = [np.argmin(np.abs(centres - (h + 0.5) * f0)) for h in (1, 2)]
    assert np.all(comb[on] > 0.5) and np.all(comb[between] < -0.5)
    assert np.all(np.abs(comb[-20:]) < 0.15)  # filters 400 Hz and wider: no resolved harmonic
    assert np.all(comb <= 1.0) and np.all(comb >= -1.0)


def test_unvoiced_frames_are_zero():
    comb = np.asarray(harmonic_comb_mel(np.array([[0.0, 150.0, -1.0]]), PRESET))
    assert comb.shape == (1, 3, PRESET.n_mels)
    np.testing.assert_array_equal(comb[0, [0, 2]], 0.0)
    assert np.abs(comb[0, 1]).max() > 0.5


def test_the_ripple_removes_the_envelope_and_the_resolved_filters_lie_between_100_hz_and_1_khz():
    envelope = np.linspace(-3.0, 1.0, PRESET.n_mels)[None, :].repeat(4, axis=0)  # linear across filters
    np.testing.assert_allclose(np.asarray(mel_ripple(envelope))[:, 3:-3], 0.0, atol=1e-5)
    filters = resolved_filters(PRESET)
    centres = np.fft.rfftfreq(PRESET.n_fft, 1 / PRESET.sample_rate)[np.argmax(
        audio.mel_filterbank(sample_rate=PRESET.sample_rate, n_fft=PRESET.n_fft, n_mels=PRESET.n_mels,
                             fmin=PRESET.fmin, fmax=PRESET.fmax, scale=PRESET.mel_scale, norm=PRESET.mel_norm),
        axis=0)]
    assert 20 <= len(filters) <= 30 and centres[filters].min() >= 100 and centres[filters].max() < 1000
    with pytest.raises(ValueError, match="voiced"):
        ripple_agreement(np.zeros((3, PRESET.n_mels)), np.zeros(3), PRESET)


def test_the_ripple_depth_scales_with_the_harmonic_peaks():
    f0 = 150.0
    log_mel = _harmonic_log_mel(f0)[4:-4]
    pitch = np.full(log_mel.shape[0], f0)
    depth = ripple_depth(log_mel, pitch, PRESET)
    assert depth > 0.5
    # Half the log-mel's contrast: half the peaks' depth, the same agreement; an envelope alone has no depth.
    np.testing.assert_allclose(ripple_depth(0.5 * log_mel, pitch, PRESET), 0.5 * depth, rtol=1e-4)
    np.testing.assert_allclose(ripple_agreement(0.5 * log_mel, pitch, PRESET), ripple_agreement(log_mel, pitch, PRESET),
                               rtol=1e-4)
    ramp = np.tile(np.linspace(-3.0, 1.0, PRESET.n_mels), (log_mel.shape[0], 1))
    assert abs(ripple_depth(ramp, pitch, PRESET)) < 1e-3
