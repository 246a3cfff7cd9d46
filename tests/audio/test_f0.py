"""YIN F0 (truth and librosa.yin / pyin parity, frame alignment with log_mel), the ProsodyFM
pitch processor (interpolation, median and mean smoothing) and terminal-contour slopes."""

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from jaxspeech.audio import (
    contour_direction,
    estimate_f0,
    log_mel,
    num_frames,
    pitch_contour,
    reject_octave_outliers,
    terminal_slope,
)

SR = 22050
HOP = 256
FRAME_RATE = SR / HOP


def _frame_centres(count):
    """Sample each tts_22k frame is centred on: frame t covers [t*hop - 384, t*hop + 640)."""
    return np.arange(count) * HOP + HOP // 2


def _harmonic(f0_of_t, seconds, partials=(1, 2, 3, 4, 5, 6), amplitude=0.3):
    """Harmonic signal whose fundamental follows f0_of_t(t) (Hz): phase is its integral."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0_of_t(t)) / SR
    return (amplitude * sum(np.sin(k * phase) / k for k in partials)).astype(np.float32)


def _librosa_yin(x):
    # Same frames as ours: tts_22k frames are librosa frames of the signal padded by 384.
    padded = np.pad(x, (384, 384))
    return librosa.yin(padded, fmin=75, fmax=600, sr=SR, frame_length=1024, hop_length=HOP, center=False)


@pytest.mark.parametrize(
    "name,f0,partials",
    [("tone", 220.0, (1,)), ("harmonics", 150.0, (1, 2, 3, 4, 5, 6)), ("missing_fundamental", 130.0, (2, 3, 4, 5))],
)
def test_stationary_f0_matches_truth_and_librosa_yin(name, f0, partials):
    x = _harmonic(lambda t: np.full_like(t, f0), 0.8, partials)
    ours, voiced = (np.asarray(a) for a in estimate_f0(x))
    inner = slice(3, -3)  # frames whose window lies inside the signal
    assert voiced[inner].all()
    np.testing.assert_allclose(ours[inner], f0, rtol=2e-3)
    np.testing.assert_allclose(ours[inner], _librosa_yin(x)[inner], rtol=1e-2)


def test_chirp_follows_instantaneous_f0_and_librosa_yin():
    track = lambda t: 100.0 + 300.0 * t  # noqa: E731  (100 -> 340 Hz over 0.8 s)
    x = _harmonic(track, 0.8)
    ours, voiced = (np.asarray(a) for a in estimate_f0(x))
    truth = track(_frame_centres(ours.shape[0]) / SR)
    inner = slice(3, -3)
    assert voiced[inner].all()
    np.testing.assert_allclose(ours[inner], truth[inner], rtol=1.5e-2)
    np.testing.assert_allclose(ours[inner], _librosa_yin(x)[inner], rtol=2.5e-2)


@pytest.mark.parametrize("num_samples", [5000, 17663])
def test_frames_align_with_log_mel(num_samples):
    x = _harmonic(lambda t: np.full_like(t, 200.0), num_samples / SR)
    f0, voiced = estimate_f0(x)
    assert f0.shape == voiced.shape == log_mel(x, "tts_22k").shape[:1] == (num_frames(num_samples, "tts_22k"),)


def test_silence_then_tone_voicing_matches_pyin():
    onset = 8820  # silence for 0.4 s, then a 180 Hz harmonic tone for 0.4 s
    x = np.concatenate([np.zeros(onset, np.float32), _harmonic(lambda t: np.full_like(t, 180.0), 0.4)])
    f0, voiced = (np.asarray(a) for a in estimate_f0(x))
    centres = _frame_centres(f0.shape[0])
    silent, toned = centres + 640 <= onset, centres - 384 >= onset  # windows fully in one part
    assert not voiced[silent].any() and (f0[silent] == 0).all()
    assert voiced[toned].all()
    _, pyin_voiced, _ = librosa.pyin(
        np.pad(x, (384, 384)), fmin=75, fmax=600, sr=SR, frame_length=1024, hop_length=HOP, center=False
    )
    clear = silent | toned
    np.testing.assert_array_equal(voiced[clear], pyin_voiced[: voiced.shape[0]][clear])


def test_batch_and_quiet_frames():
    a = _harmonic(lambda t: np.full_like(t, 120.0), 0.8)
    b = _harmonic(lambda t: np.full_like(t, 300.0), 0.8)
    f0, voiced = estimate_f0(np.stack([a, b]))
    for row, x in enumerate((a, b)):
        single_f0, single_voiced = estimate_f0(x)
        np.testing.assert_allclose(f0[row], single_f0, rtol=1e-5)
        np.testing.assert_array_equal(voiced[row], single_voiced)
    # A tone 60 dB below the loudest part of the same signal counts as silence.
    quiet = np.concatenate([a[:8820], 1e-3 * b[:8820]])
    _, voiced = estimate_f0(quiet)
    assert np.asarray(voiced)[-10:].sum() == 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="too short for fmin"):
        estimate_f0(np.zeros(4000, np.float32), fmin=30.0)
    with pytest.raises(ValueError, match="fmin < fmax"):
        estimate_f0(np.zeros(4000, np.float32), fmin=300.0, fmax=200.0)
    with pytest.raises(ValueError, match="float array"):
        estimate_f0(np.zeros(4000, np.int16))
    with pytest.raises(ValueError, match="odd"):
        pitch_contour(jnp.ones(10), jnp.ones(10, bool), median_width=4)


def test_pitch_contour_fills_unvoiced_gaps_linearly():
    log_f0 = np.log(120.0) + np.linspace(0.0, 0.6, 40)
    voiced = np.ones(40, bool)
    voiced[12:25] = False
    voiced[:3] = False
    voiced[-2:] = False
    f0 = np.where(voiced, np.exp(log_f0), 0.0)
    out = np.asarray(pitch_contour(f0, voiced, median_width=1, mean_width=1))
    # Inside the gap: the straight line between the voiced endpoints (frames 11 and 25).
    line = log_f0[11] + (log_f0[25] - log_f0[11]) * (np.arange(11, 26) - 11) / 14
    np.testing.assert_allclose(out[11:26], line, atol=1e-5)
    np.testing.assert_allclose(out[voiced], log_f0[voiced], atol=1e-5)
    np.testing.assert_allclose(out[:3], log_f0[3], atol=1e-5)  # held before the first voiced frame
    np.testing.assert_allclose(out[-2:], log_f0[-3], atol=1e-5)  # and after the last
    assert (np.asarray(pitch_contour(np.zeros(40), np.zeros(40, bool), median_width=1, mean_width=1)) == 0).all()


def test_pitch_contour_median_removes_octave_jumps_and_mean_matches_numpy():
    f0 = np.full(40, 150.0)
    f0[10] = 210.0  # isolated jumps (within max_octaves of the median, so the median filter's job)
    f0[20] = 110.0
    voiced = np.ones(40, bool)
    out = np.asarray(pitch_contour(f0, voiced, median_width=5, mean_width=1))
    np.testing.assert_allclose(out, np.log(150.0), atol=1e-6)
    rng = np.random.default_rng(0)
    f0 = np.exp(np.log(150.0) + 0.1 * rng.standard_normal(40))
    out = np.asarray(pitch_contour(f0, voiced, median_width=1, mean_width=5))
    reference = np.convolve(np.pad(np.log(f0), 2, mode="edge"), np.ones(5) / 5, mode="valid")
    np.testing.assert_allclose(out, reference, atol=1e-5)
    batched = np.asarray(pitch_contour(np.stack([f0, f0[::-1]]), np.ones((2, 40), bool), median_width=1))
    np.testing.assert_allclose(batched[1], np.asarray(pitch_contour(f0[::-1], voiced, median_width=1)), atol=1e-6)


def test_octave_outlier_runs_are_rejected_and_interpolated():
    f0 = np.full(40, 120.0) * np.exp(np.linspace(0.0, 0.3, 40))
    voiced = np.ones(40, bool)
    voiced[30:33] = False
    f0[15:19] *= 2.0  # a run of octave errors, too long for the 5-frame median
    f0[25] *= 3.0
    kept = np.asarray(reject_octave_outliers(f0, voiced))
    expected = voiced.copy()
    expected[15:19] = False
    expected[25] = False
    np.testing.assert_array_equal(kept, expected)
    out = np.asarray(pitch_contour(f0, voiced, median_width=1, mean_width=1))
    truth = np.log(120.0) + np.linspace(0.0, 0.3, 40)
    np.testing.assert_allclose(out, truth, atol=1e-5)  # every rejected frame lies on the line
    with pytest.raises(ValueError, match="max_octaves"):
        reject_octave_outliers(f0, voiced, max_octaves=0.0)


def test_terminal_slope_is_least_squares_over_the_last_window():
    seconds = np.arange(100) / FRAME_RATE
    # Rises at +2 ln-Hz/s, then falls at -1.5 ln-Hz/s over the last 40 frames (~464 ms).
    log_f0 = np.where(np.arange(100) < 60, 5.0 + 2.0 * seconds, 5.0 + 2.0 * seconds[60] - 1.5 * (seconds - seconds[60]))
    mask = np.ones(100, bool)
    mask[90:93] = False
    slope = terminal_slope(log_f0, mask, 0, 100, frame_rate=FRAME_RATE, window_ms=250.0)
    np.testing.assert_allclose(float(slope), -1.5, rtol=1e-4)
    assert contour_direction(slope) == "falling"
    # A span ending at frame 60 sees only the rise.
    assert contour_direction(terminal_slope(log_f0, mask, 0, 60, frame_rate=FRAME_RATE)) == "rising"
    # Parity with numpy's weighted polyfit on noisy values, restricted to [max(start, end - 17), end).
    rng = np.random.default_rng(1)
    noisy = log_f0 + 0.05 * rng.standard_normal(100)
    window = int(round(200.0 * FRAME_RATE / 1000.0))
    for start, end in [(0, 100), (70, 85), (5, 40)]:
        keep = np.arange(100)
        keep = keep[(keep >= max(start, end - window)) & (keep < end) & mask]
        expected = np.polyfit(seconds[keep], noisy[keep], 1)[0]
        got = terminal_slope(noisy, mask, start, end, frame_rate=FRAME_RATE)
        np.testing.assert_allclose(float(got), expected, rtol=1e-3)
    spans = jax.vmap(lambda s, e: terminal_slope(noisy, mask, s, e, frame_rate=FRAME_RATE))(
        jnp.array([0, 70]), jnp.array([100, 85])
    )
    np.testing.assert_allclose(spans[1], terminal_slope(noisy, mask, 70, 85, frame_rate=FRAME_RATE), rtol=1e-6)
    assert float(terminal_slope(noisy, np.zeros(100, bool), 0, 100, frame_rate=FRAME_RATE)) == 0.0
