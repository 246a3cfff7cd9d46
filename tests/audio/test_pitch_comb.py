import itertools

import numpy as np
import pytest

from jaxspeech import audio
from jaxspeech.audio.pitch_comb import (
    _viterbi,
    harmonic_comb_mel,
    lowest_resolved_f0,
    mel_f0,
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


def _glide_log_mel(f_start: float, f_end: float, seconds: float = 1.0,
                   preset=PRESET) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel [T, M], the true F0 at each frame's centre [T]) of harmonics 1/sqrt(h)-weighted up to 4 kHz
    gliding geometrically from f_start to f_end Hz."""
    n = int(seconds * PRESET.sample_rate)
    f = np.geomspace(f_start, f_end, n)
    phase = 2 * np.pi * np.cumsum(f) / PRESET.sample_rate
    wave = sum(np.cos(h * phase) / np.sqrt(h) for h in range(1, int(4000 // max(f_start, f_end)) + 1))
    log_mel = np.asarray(audio.log_mel((0.05 * wave).astype(np.float32), preset))
    return log_mel, f[np.clip(np.arange(len(log_mel)) * PRESET.hop_length, 0, n - 1)]


@pytest.mark.parametrize("start, end", [(110.0, 170.0), (170.0, 110.0), (250.0, 350.0), (100.0, 100.0)])
def test_mel_f0_reads_a_gliding_pitch_off_the_mel_alone(start, end):
    log_mel, true = _glide_log_mel(start, end)
    f0, voiced = (np.asarray(x)[4:-4] for x in mel_f0(log_mel, PRESET))
    cents = 1200 * np.abs(np.log2(np.maximum(f0, 1.0) / true[4:-4]))
    assert voiced.all()
    assert np.median(cents) < 10 and cents.max() < 40  # no octave slip, refined between the 25-cent grid steps


def test_mel_f0_finds_no_voice_in_noise_or_silence():
    noise = np.random.default_rng(0).standard_normal(PRESET.sample_rate).astype(np.float32) * 0.05
    _, voiced = mel_f0(np.asarray(audio.log_mel(noise, PRESET)), PRESET)
    assert np.mean(np.asarray(voiced)) < 0.1
    _, voiced = mel_f0(np.full((20, PRESET.n_mels), -11.5, np.float32), PRESET)
    assert not np.asarray(voiced).any()


def test_below_the_lowest_resolved_f0_the_mel_holds_an_alias_not_the_pitch():
    lowest = lowest_resolved_f0(PRESET)
    assert 60.0 < lowest < 90.0  # twice the 37 Hz spacing of the tts_22k filters below 1 kHz
    log_mel, true = _glide_log_mel(0.85 * lowest, 0.85 * lowest)
    f0, _ = mel_f0(log_mel, PRESET, fmin=0.5 * lowest)
    assert np.median(np.abs(np.log2(np.asarray(f0)[4:-4] / true[4:-4]))) > 0.25  # read a third or more away
    # The same falling end of a low voice on 128 filters (23 Hz apart): resolved, read within a quarter tone.
    fine = audio.get_preset("tts_22k_128")
    assert lowest_resolved_f0(fine) < 50.0
    log_mel, true = _glide_log_mel(72.0, 58.0, preset=fine)
    f0, voiced = (np.asarray(x)[4:-4] for x in mel_f0(log_mel, fine))
    assert voiced.all() and np.median(1200 * np.abs(np.log2(f0 / true[4:-4]))) < 50


def test_viterbi_finds_the_best_path_of_a_brute_force_search():
    rng = np.random.default_rng(1)
    score = rng.standard_normal((5, 3)).astype(np.float32)
    transition = -np.abs(np.arange(3)[:, None] - np.arange(3)[None, :]).astype(np.float32) * 0.7

    def total(path):
        return score[np.arange(5), path].sum() + sum(transition[a, b] for a, b in zip(path[:-1], path[1:]))

    best = max(itertools.product(range(3), repeat=5), key=lambda p: total(np.array(p)))
    np.testing.assert_array_equal(np.asarray(_viterbi(score, transition)), best)


def test_mel_f0_checks_its_grid():
    with pytest.raises(ValueError, match="fmin < fmax"):
        mel_f0(np.zeros((4, PRESET.n_mels), np.float32), PRESET, fmin=300.0, fmax=100.0)
