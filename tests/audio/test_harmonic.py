"""Harmonic-plus-noise vocoder: amplitudes from an envelope, magnitude and pitch of the output, noise level."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.audio import estimate_f0, get_preset, log_mel, stft
from jaxspeech.audio.harmonic import crossover_weights, harmonic_amplitudes, harmonic_plus_noise, log_mel_f0_to_audio

SR, N_FFT, HOP = 22050, 1024, 256
FRAMES = 48
LENGTH = (FRAMES - 1) * HOP + N_FFT
AMPLITUDES = (0.8, 0.4, 0.25, 0.1)
SIZES = dict(sample_rate=SR, n_fft=N_FFT, hop_length=HOP)


def harmonic_signal(f0: float) -> np.ndarray:
    n = np.arange(LENGTH)
    return sum(a * np.cos(2 * np.pi * (h + 1) * f0 * n / SR + h) for h, a in enumerate(AMPLITUDES)).astype(np.float32)


def magnitude_of(x) -> jax.Array:
    return jnp.abs(stft(jnp.asarray(x), n_fft=N_FFT, hop_length=HOP))


# Energy (power 2) is exact by Parseval; the magnitude mass of a sinusoid's STFT depends on where it
# falls between bins by a few per cent, and the unit mass is its average over offsets.
@pytest.mark.parametrize("power, rtol", [(1.0, 0.05), (2.0, 0.01)])
def test_amplitudes_of_a_harmonic_signal_are_read_back_from_its_stft(power, rtol):
    f0 = 173.0  # harmonics fall between bins
    magnitude = magnitude_of(harmonic_signal(f0))
    got = harmonic_amplitudes(magnitude, jnp.full((FRAMES,), f0), sample_rate=SR, n_fft=N_FFT, power=power,
                              num_harmonics=6)
    np.testing.assert_allclose(np.asarray(got)[FRAMES // 2, :4], AMPLITUDES, rtol=rtol)
    assert np.all(np.asarray(got)[FRAMES // 2, 4:] < 0.01)
    # Nothing at or above Nyquist.
    high = harmonic_amplitudes(jnp.ones((2, N_FFT // 2 + 1)), jnp.full((2,), 5000.0), sample_rate=SR, n_fft=N_FFT,
                               num_harmonics=4)
    assert np.all(np.asarray(high)[:, 2:] == 0) and np.all(np.asarray(high)[:, :2] > 0)


def test_a_voiced_output_reproduces_the_envelope_and_the_pitch():
    f0 = 173.0
    magnitude = magnitude_of(harmonic_signal(f0))
    out = harmonic_plus_noise(magnitude, jnp.full((FRAMES,), f0), jnp.ones((FRAMES,), bool), jax.random.key(0),
                              voiced_noise=0.0, **SIZES)
    assert out.shape == (LENGTH,)
    inner = slice(4, -4)
    rebuilt = magnitude_of(out)
    error = np.linalg.norm(rebuilt[inner] - magnitude[inner]) / np.linalg.norm(magnitude[inner])
    assert error < 0.03, error


def test_the_output_pitch_follows_a_rising_f0_through_a_mel_envelope():
    preset = get_preset("tts_22k")
    mel = log_mel(harmonic_signal(150.0), preset)  # [T, 80]
    frames = mel.shape[0]
    f0 = np.geomspace(110.0, 220.0, frames)  # one octave up
    voiced = np.ones(frames, bool)
    voiced[:3] = False
    waveform = log_mel_f0_to_audio(mel, f0, voiced, jax.random.key(1), preset)
    assert waveform.shape == (frames * preset.hop_length,)
    measured, measured_voiced = estimate_f0(waveform, preset, fmin=60.0, fmax=600.0)
    inner = slice(6, frames - 6)
    assert np.all(np.asarray(measured_voiced)[inner])
    np.testing.assert_allclose(np.asarray(measured)[inner], f0[inner], rtol=0.02)


def test_unvoiced_frames_are_noise_with_the_envelope_s_power():
    envelope = jnp.broadcast_to(jnp.exp(-jnp.arange(N_FFT // 2 + 1) / 120.0), (FRAMES, N_FFT // 2 + 1))
    out = harmonic_plus_noise(envelope, jnp.zeros((FRAMES,)), jnp.zeros((FRAMES,), bool), jax.random.key(2), **SIZES)
    power = np.asarray(magnitude_of(out))[4:-4] ** 2
    target = np.asarray(envelope)[4:-4] ** 2
    for band in (slice(0, 60), slice(60, 180), slice(180, 300)):
        np.testing.assert_allclose(power[:, band].mean() / target[:, band].mean(), 1.0, rtol=0.15)
    # No periodicity: YIN finds no voiced frame in the middle.
    _, voiced = estimate_f0(out, get_preset("tts_22k"))
    assert np.asarray(voiced)[8:-8].mean() < 0.2


def test_a_voicing_probability_mixes_the_harmonic_and_noise_renderings():
    magnitude = magnitude_of(harmonic_signal(173.0))
    f0, key = jnp.full((FRAMES,), 173.0), jax.random.key(3)

    def render(voicing):
        return harmonic_plus_noise(magnitude, f0, jnp.full((FRAMES,), voicing), key, voiced_noise=0.0, **SIZES)

    # Harmonics x p, noise x (1 - p) with no noise in voiced frames; the same key draws the same noise.
    np.testing.assert_allclose(render(0.6), 0.6 * render(1.0) + 0.4 * render(0.0), atol=1e-4)
    np.testing.assert_array_equal(render(True), render(1.0))


def test_bad_arguments_are_named():
    magnitude = jnp.ones((FRAMES, N_FFT // 2 + 1))
    with pytest.raises(ValueError, match="voiced_noise"):
        harmonic_plus_noise(magnitude, jnp.full((FRAMES,), 100.0), jnp.ones((FRAMES,), bool), jax.random.key(0),
                            voiced_noise=2.0, **SIZES)
    with pytest.raises(AssertionError):
        harmonic_plus_noise(magnitude, jnp.full((FRAMES + 1,), 100.0), jnp.ones((FRAMES + 1,), bool),
                            jax.random.key(0), **SIZES)
    with pytest.raises(ValueError, match="harmonic_below_hz must be >= 0 Hz"):
        log_mel_f0_to_audio(jnp.zeros((4, 80)), jnp.full((4,), 100.0), jnp.ones((4,), bool), jax.random.key(0),
                            griffin_lim_iterations=2, harmonic_below_hz=-1.0)


def test_griffin_lim_refinement_moves_the_rendering_toward_the_mel_and_keeps_the_pitch():
    preset = get_preset("tts_22k")
    mel = log_mel(harmonic_signal(150.0), preset)
    frames = mel.shape[0]
    f0, voiced = np.full(frames, 150.0), np.ones(frames, bool)
    error = {}
    for n_iter in (0, 16):
        waveform = log_mel_f0_to_audio(mel, f0, voiced, jax.random.key(1), preset, griffin_lim_iterations=n_iter)
        error[n_iter] = float(np.mean(np.abs(np.asarray(log_mel(waveform, preset) - mel))[4:-4]))
        measured, measured_voiced = estimate_f0(waveform, preset, fmin=60.0, fmax=600.0)
        np.testing.assert_allclose(np.asarray(measured)[6:-6], 150.0, rtol=0.02)
    assert error[16] < 0.8 * error[0], error


def voice_120_hz_mel(preset) -> jax.Array:
    """Log-mel ``[T, M]`` of 30 harmonics of 120 Hz falling as 1/h: a mel whose ripple holds a pitch."""
    n = np.arange(LENGTH)
    voice = sum((0.8 / (h + 1)) * np.cos(2 * np.pi * (h + 1) * 120.0 * n / SR + h) for h in range(30))
    return log_mel(voice.astype(np.float32), preset)


def test_the_band_below_the_crossover_keeps_the_requested_pitch_through_the_refinement():
    # The mel holds a 120 Hz voice; the F0 asks for 180 Hz. Refinement over the whole band follows
    # the mel's harmonic ripple back to 120 Hz; above a 1 kHz crossover only, the pitch stays.
    preset = get_preset("tts_22k")
    mel = voice_120_hz_mel(preset)
    frames = mel.shape[0]
    f0, voiced = np.full(frames, 180.0), np.ones(frames, bool)
    pitch, error = {}, {}
    for band in (0.0, 1000.0):
        waveform = log_mel_f0_to_audio(mel, f0, voiced, jax.random.key(1), preset, griffin_lim_iterations=32,
                                       harmonic_below_hz=band)
        pitch[band] = float(np.median(np.asarray(estimate_f0(waveform, preset, fmin=60.0, fmax=600.0)[0])[6:-6]))
        error[band] = float(np.mean(np.abs(np.asarray(log_mel(waveform, preset) - mel))[4:-4]))
    np.testing.assert_allclose([pitch[0.0], pitch[1000.0]], [120.0, 180.0], rtol=0.02)
    assert error[0.0] < error[1000.0]  # the whole-band refinement fits the mel better, at the pitch's expense


def test_frames_marked_unvoiced_are_refined_over_the_whole_band():
    # The same 120 Hz mel, F0 180 Hz asked for in the first half only. With refine_unvoiced the
    # second half's low band follows the mel (Griffin-Lim) instead of staying envelope-shaped noise;
    # the voiced half keeps its 180 Hz rendering either way.
    preset = get_preset("tts_22k")
    mel = voice_120_hz_mel(preset)
    frames = mel.shape[0]
    half = frames // 2
    f0, voiced = np.full(frames, 180.0), np.arange(frames) < half
    pitch, low_band_error = {}, {}
    for refine_unvoiced in (False, True):
        waveform = log_mel_f0_to_audio(mel, f0, voiced, jax.random.key(1), preset, griffin_lim_iterations=32,
                                       harmonic_below_hz=1000.0, refine_unvoiced=refine_unvoiced)
        pitch[refine_unvoiced] = float(np.median(np.asarray(estimate_f0(waveform, preset, fmin=60.0,
                                                                          fmax=600.0)[0])[4 : half - 4]))
        error = np.abs(np.asarray(log_mel(waveform, preset) - mel))[:, :40].mean(axis=-1)
        low_band_error[refine_unvoiced] = (float(error[4 : half - 4].mean()), float(error[half + 4 : -4].mean()))
    np.testing.assert_allclose([pitch[False], pitch[True]], 180.0, rtol=0.02)
    np.testing.assert_allclose(low_band_error[True][0], low_band_error[False][0], rtol=0.05)
    assert low_band_error[True][1] < 0.5 * low_band_error[False][1], low_band_error


def test_crossover_weights_split_the_band_at_the_crossover():
    weights = crossover_weights(N_FFT, SR, 1000.0)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / SR)
    assert np.all(weights[freqs <= 1000.0 / np.sqrt(2)] == 1.0) and np.all(weights[freqs >= 1000.0 * np.sqrt(2)] == 0)
    assert np.all(np.diff(weights) <= 0)
    np.testing.assert_allclose(np.interp(1000.0, freqs, weights), 0.5, atol=0.02)
    assert not crossover_weights(N_FFT, SR, 0.0).any()


def test_the_harmonic_excitation_is_the_sum_of_its_harmonics_below_nyquist():
    # Closed form against the explicit sum of cos(2 pi h c) over h * f0 < Nyquist (at most 128), F0 from
    # 50 to 300 Hz with unvoiced frames between; silence where unvoiced; harmonic_plus_noise's framing.
    from jaxspeech.audio.harmonic import harmonic_excitation

    frames, hop, n_fft, sr = 20, 256, 1024, 22050
    f0 = np.geomspace(50.0, 300.0, frames)[None].astype(np.float32)  # log-linear: the glide through gaps is f0
    voiced = (np.arange(frames) % 7 != 3)[None]
    x = np.asarray(harmonic_excitation(jnp.asarray(f0), jnp.asarray(voiced), sample_rate=sr, n_fft=n_fft,
                                       hop_length=hop, num_harmonics=128))[0]
    assert x.shape == ((frames - 1) * hop + n_fft,)
    # The reference: per-sample F0 and voicing interpolated between frame centres, phase integrated in float64.
    centres = np.arange(frames) * hop + n_fft / 2
    samples = np.arange(x.shape[0])
    sample_f0 = np.interp(samples, centres, f0[0].astype(np.float64))
    cycles = np.cumsum(sample_f0) / sr
    reference = sum(np.where(h * sample_f0 < sr / 2, np.cos(2 * np.pi * h * cycles), 0.0) for h in range(1, 129))
    reference *= np.interp(samples, centres, voiced[0].astype(float))
    np.testing.assert_allclose(x, reference, atol=0.05)  # of a peak of 128 harmonics
    assert np.all(x[np.interp(samples, centres, voiced[0].astype(float)) == 0.0] == 0.0)
