"""MCD: cepstrum scaling (closed forms on synthetic log-mels), DTW parity with
librosa.sequence.dtw, and identity / time-warp invariance on audio."""

import librosa
import numpy as np
import pytest

from jaxspeech.eval import cepstral_distortion, dtw, mel_cepstral_distortion, mel_cepstrum

DB_PER_NEPER = 10.0 / np.log(10.0)
M = 80


def _cosine(n, amplitude, frames=20):
    k = np.arange(M)
    return np.tile(amplitude * np.cos(np.pi * n * (k + 0.5) / M), (frames, 1))


def test_known_cepstral_relations():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((20, M))
    # c_0 (overall level) is excluded: a constant offset costs nothing.
    assert cepstral_distortion(mel_cepstrum(base), mel_cepstrum(base + 3.0)) == pytest.approx(0.0, abs=1e-9)
    # A cosine ripple of amplitude a at quefrency n <= 13 is c_n = a / 2, so MCD = 10/ln10 * a / sqrt(2).
    for n, a in [(1, 0.5), (7, 1.2), (13, 0.3)]:
        c = mel_cepstrum(base + _cosine(n, a))
        expected = DB_PER_NEPER * a / np.sqrt(2.0)
        assert cepstral_distortion(c, mel_cepstrum(base)) == pytest.approx(expected, rel=1e-9)
    # Quefrencies above the kept 13 are invisible.
    high = mel_cepstrum(base + _cosine(20, 1.0))
    assert cepstral_distortion(high, mel_cepstrum(base)) == pytest.approx(0.0, abs=1e-9)
    # Parseval: with all M - 1 coefficients, MCD is 10/ln10 * the standard deviation over mels
    # of the log-mel difference (single frames, so DTW has nothing to choose).
    other = base + 0.3 * rng.standard_normal((20, M))
    for frame in range(0, 20, 5):
        one, two = base[frame : frame + 1], other[frame : frame + 1]
        got = cepstral_distortion(mel_cepstrum(one, M - 1), mel_cepstrum(two, M - 1))
        assert got == pytest.approx(DB_PER_NEPER * np.std(other[frame] - base[frame]), rel=1e-9)


@pytest.mark.parametrize("shape", [(30, 30), (25, 40), (40, 17), (1, 9)])
def test_dtw_matches_librosa(shape):
    cost = np.random.default_rng(shape[0] * 100 + shape[1]).random(shape)
    total, path = dtw(cost)
    accumulated, reference_path = librosa.sequence.dtw(C=cost)
    assert total == pytest.approx(accumulated[-1, -1], rel=1e-12)
    np.testing.assert_array_equal(path, reference_path[::-1])
    assert cost[path[:, 0], path[:, 1]].sum() == pytest.approx(total, rel=1e-12)


def test_mcd_on_audio_is_zero_for_identity_and_time_warps():
    sr = 22050
    t = np.arange(int(0.5 * sr)) / sr
    phase = 2 * np.pi * (120.0 * t + 80.0 * t**2)
    rng = np.random.default_rng(2)
    x = 0.3 * sum(np.sin(k * phase) / k for k in range(1, 20)) + 0.01 * rng.standard_normal(t.shape)
    x = x.astype(np.float32)
    assert mel_cepstral_distortion(x, x) == 0.0
    # Repeating frames stretches time without changing any frame: DTW absorbs it. Hop-aligned
    # block repetition of the waveform repeats mel frames only approximately, so compare cepstra.
    ln_mel = np.log(np.random.default_rng(1).random((30, M)) + 0.1)
    stretched = np.repeat(ln_mel, 2, axis=0)
    assert cepstral_distortion(mel_cepstrum(stretched), mel_cepstrum(ln_mel)) == pytest.approx(0.0, abs=1e-12)
    noisy = x + 0.05 * rng.standard_normal(x.shape).astype(np.float32)
    louder = 2.0 * x
    assert mel_cepstral_distortion(noisy, x) > 1.0
    # A gain only changes c_0 (the noise keeps every mel channel above the log floor).
    assert mel_cepstral_distortion(louder, x) < 0.05


def test_bad_inputs():
    with pytest.raises(ValueError, match="n_coefficients"):
        mel_cepstrum(np.zeros((3, 10)), 10)
    with pytest.raises(ValueError, match=r"\[T1, n\]"):
        cepstral_distortion(np.zeros((3, 13)), np.zeros((3, 12)))
    with pytest.raises(ValueError, match="1-D"):
        mel_cepstral_distortion(np.zeros((2, 100)), np.zeros(100))
    with pytest.raises(ValueError, match="finite"):
        dtw(np.array([[np.nan]]))


def test_mcd_is_taken_over_80_filters_whatever_the_presets_own_count():
    sr = 22050
    rng = np.random.default_rng(3)
    t = np.arange(int(0.4 * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 150.0 * t) + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)
    noisy = x + 0.05 * rng.standard_normal(x.shape).astype(np.float32)
    on_80 = mel_cepstral_distortion(noisy, x, preset="tts_22k")
    # A 128-filter model is scored on the same scale as an 80-filter one ...
    assert mel_cepstral_distortion(noisy, x, preset="tts_22k_128") == on_80
    # ... unless asked for its own filterbank, which smooths the spectrum differently.
    own = mel_cepstral_distortion(noisy, x, preset="tts_22k_128", n_mels=None)
    assert own != pytest.approx(on_80, rel=1e-3)
