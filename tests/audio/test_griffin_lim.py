"""Griffin-Lim vocoder: NNLS mel inversion (vs scipy), fast GLA parity with librosa.griffinlim,
convergence and log-mel fidelity on a real eSpeak utterance."""

import jax
import librosa
import numpy as np
import pytest
import scipy.optimize

from jaxspeech.audio import (
    get_preset,
    griffin_lim,
    log_mel,
    log_mel_to_audio,
    mel_filterbank,
    mel_to_magnitude,
    spectral_convergence,
    stft,
)
from jaxspeech.audio.harmonic import crossover_weights

SIZES = dict(n_fft=1024, hop_length=256)


@pytest.fixture(scope="module")
def utterance():
    from jaxspeech.data import espeak

    return espeak.synthesize("The farmer sold three large melons.", "en-us").float_audio()


def _magnitude(x):
    """|STFT| of x framed as tts_22k frames it (reflect padding by 384, no centring)."""
    return np.abs(np.asarray(stft(np.pad(x, (384, 384), mode="reflect"), **SIZES)))


def test_mel_to_magnitude_solves_the_nonnegative_least_squares_problem(utterance):
    features = log_mel(utterance[:22050], "tts_22k")
    p = get_preset("tts_22k")
    fb = mel_filterbank(sample_rate=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmax=p.fmax).astype(np.float64)
    mel = np.exp(np.asarray(features, np.float64))
    pinv = np.asarray(mel_to_magnitude(features, nnls_iterations=0), np.float64)
    refined = np.asarray(mel_to_magnitude(features), np.float64)
    assert (pinv >= 0).all() and (refined >= 0).all()
    relative = lambda s: np.linalg.norm(s @ fb - mel, axis=-1) / np.linalg.norm(mel, axis=-1)  # noqa: E731
    # scipy's active-set NNLS solves these frames exactly; 100 FISTA steps get within 1e-5,
    # far below the clipped pseudo-inverse's error.
    for frame in (20, 40, 60):
        _, residual = scipy.optimize.nnls(fb.T, mel[frame])
        assert residual / np.linalg.norm(mel[frame]) < 1e-6
    assert relative(refined).max() < 1e-5 < 1e-3 < relative(pinv).mean()
    # Bins above fmax = 8 kHz are outside every filter and come back empty.
    assert (refined[:, 372:] == 0).all()


@pytest.mark.parametrize("momentum", [0.0, 0.99])
def test_griffin_lim_matches_librosa(utterance, momentum):
    magnitude = _magnitude(utterance)[:60]
    ours = np.asarray(griffin_lim(magnitude, **SIZES, n_iter=12, momentum=momentum))
    # float64 reference: the momentum iteration amplifies float32 rounding in near-empty bins.
    reference = librosa.griffinlim(
        magnitude.T.astype(np.float64), n_iter=12, hop_length=256, n_fft=1024, win_length=1024,
        center=False, momentum=momentum, init=None,
    )
    assert ours.shape == reference.shape == ((60 - 1) * 256 + 1024,)
    assert np.linalg.norm(ours - reference) / np.linalg.norm(reference) < 1e-4


def test_griffin_lim_converges_and_reproduces_the_log_mel(utterance):
    features = log_mel(utterance, "tts_22k")
    magnitude = mel_to_magnitude(features)
    convergence = []
    for n_iter in (0, 4, 32):
        padded = griffin_lim(magnitude, **SIZES, n_iter=n_iter)
        convergence.append(float(spectral_convergence(magnitude, np.abs(np.asarray(stft(padded, **SIZES))))))
    assert convergence[0] > convergence[1] > convergence[2]
    assert convergence[2] < 0.25
    audio = log_mel_to_audio(features, "tts_22k", n_iter=32)
    assert audio.shape == (features.shape[0] * 256,)
    error = np.abs(np.asarray(log_mel(audio, "tts_22k")) - np.asarray(features))
    # Griffin-Lim cannot be exact (its fixed point is a local one); the measured mean error on
    # this utterance is ~0.13 nepers (~1.1 dB) after 32 iterations versus ~3 with zero phase.
    assert error.mean() < 0.2
    # A random initial phase also converges, and the key fully determines the result.
    key = jax.random.key(0)
    first = log_mel_to_audio(features, "tts_22k", n_iter=32, key=key)
    np.testing.assert_array_equal(first, log_mel_to_audio(features, "tts_22k", n_iter=32, key=key))
    error = np.abs(np.asarray(log_mel(first, "tts_22k")) - np.asarray(features))
    assert error.mean() < 0.25


def test_batch_and_bad_inputs(utterance):
    features = log_mel(np.stack([utterance[:8192], utterance[8192:16384]]), "tts_22k")
    magnitude = np.asarray(mel_to_magnitude(features))
    single = np.asarray(mel_to_magnitude(features[1]))
    assert np.linalg.norm(magnitude[1] - single) / np.linalg.norm(single) < 1e-4
    batched = np.asarray(griffin_lim(magnitude, **SIZES, n_iter=2))
    np.testing.assert_allclose(batched[1], griffin_lim(magnitude[1], **SIZES, n_iter=2), rtol=1e-5, atol=1e-6)
    assert log_mel_to_audio(features, n_iter=2).shape == (2, features.shape[1] * 256)
    with pytest.raises(ValueError, match="80"):
        mel_to_magnitude(np.zeros((10, 64), np.float32))
    with pytest.raises(ValueError, match="513"):
        griffin_lim(np.zeros((10, 512), np.float32), **SIZES)


def test_an_initial_phase_is_where_the_iterations_start(utterance):
    x = utterance[:16384]
    spec = np.asarray(stft(x, **SIZES))
    # The true phase of a consistent spectrogram gives the signal back with no iteration (up to the
    # ends, where the squared-window sum is small).
    rebuilt = np.asarray(griffin_lim(np.abs(spec), **SIZES, n_iter=0, phase=np.angle(spec)))
    inner = slice(1024, len(rebuilt) - 1024)
    np.testing.assert_allclose(rebuilt[inner], x[inner], atol=1e-4)
    # Iterating from the true phase stays at the solution; from a zero phase it does not get there in 4.
    from_truth = np.asarray(griffin_lim(np.abs(spec), **SIZES, n_iter=4, phase=np.angle(spec)))
    from_zero = np.asarray(griffin_lim(np.abs(spec), **SIZES, n_iter=4))
    assert np.abs(from_truth[inner] - x[inner]).max() < 1e-3 < np.abs(from_zero[inner] - x[inner]).max()
    with pytest.raises(ValueError, match="not both"):
        griffin_lim(np.abs(spec), **SIZES, key=jax.random.key(0), phase=np.angle(spec))


def test_an_anchored_band_is_held_and_fixes_the_phase_of_the_rest(utterance):
    x = utterance[:16384]
    spec = np.asarray(stft(x, **SIZES))
    below_1k = crossover_weights(SIZES["n_fft"], 22050, 1000.0)
    magnitude_error, held_error = {}, {}
    for anchor in (None, spec):
        out = np.asarray(stft(griffin_lim(np.abs(spec), **SIZES, n_iter=8, key=jax.random.key(0), anchor=anchor,
                                          anchor_weight=below_1k), **SIZES))
        magnitude_error[anchor is None] = np.abs(np.abs(out) - np.abs(spec)).mean() / np.abs(spec).mean()
        held_error[anchor is None] = np.abs(out[:, :30] - spec[:, :30]).mean() / np.abs(spec[:, :30]).mean()
    assert held_error[False] < 1e-3 < 0.5 < held_error[True], held_error  # the band below ~700 Hz is the anchor's
    # The held band's true phase leads the free band's toward the true magnitudes.
    assert magnitude_error[False] < 0.6 * magnitude_error[True], magnitude_error
