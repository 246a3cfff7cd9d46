"""stft / istft: parity with librosa, perfect reconstruction, jit and vmap."""

import functools

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from jaxspeech.audio import istft, stft
from jaxspeech.audio.spectral import window_function

# (n_fft, hop_length, win_length): HiFi-GAN, Whisper, a short window inside a longer FFT.
CONFIGS = [(1024, 256, 1024), (400, 160, 400), (512, 128, 300)]


def _jit(fn, **static):
    return jax.jit(functools.partial(fn, **static))


def _signal(shape, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(shape[-1]) / 16000.0
    chirp = 0.5 * np.sin(2 * np.pi * (100.0 + 2000.0 * t) * t)
    return (chirp + 0.05 * rng.standard_normal(shape)).astype(np.float32)


def test_hann_is_periodic_and_centre_padded():
    np.testing.assert_allclose(window_function("hann", 8, 8), np.hanning(9)[:-1], atol=1e-12)
    padded = window_function("hann", 6, 10)
    np.testing.assert_array_equal(padded[:2], 0.0)
    np.testing.assert_array_equal(padded[-2:], 0.0)
    np.testing.assert_allclose(padded[2:8], np.hanning(7)[:-1], atol=1e-12)


@pytest.mark.parametrize("n_fft,hop,win", CONFIGS)
@pytest.mark.parametrize("center", [False, True])
def test_stft_matches_librosa(n_fft, hop, win, center):
    x = _signal((2, 3, 5003))
    ours = np.asarray(_jit(stft, n_fft=n_fft, hop_length=hop, win_length=win, center=center)(x))
    ref = librosa.stft(
        x, n_fft=n_fft, hop_length=hop, win_length=win, center=center, pad_mode="reflect"
    ).swapaxes(-1, -2)
    assert ours.dtype == np.complex64 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-6 * np.abs(ref).max())


@pytest.mark.parametrize("n_fft,hop,win", CONFIGS)
def test_centred_roundtrip_is_perfect(n_fft, hop, win):
    x = _signal((2, 4000))
    kw = dict(n_fft=n_fft, hop_length=hop, win_length=win, center=True)
    y = _jit(istft, **kw, length=x.shape[-1])(_jit(stft, **kw)(x))
    assert y.dtype == jnp.float32 and y.shape == x.shape
    np.testing.assert_allclose(np.asarray(y), x, atol=2e-6)


@pytest.mark.parametrize("n_fft,hop,win", CONFIGS)
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("length", [None, 3000, 4500])
def test_istft_matches_librosa(n_fft, hop, win, center, length):
    rng = np.random.default_rng(1)
    # An arbitrary (not STFT-consistent) spectrum exercises the overlap-add itself.
    spec = (rng.standard_normal((2, 25, n_fft // 2 + 1)) + 1j * rng.standard_normal((2, 25, n_fft // 2 + 1)))
    spec = spec.astype(np.complex64)
    kw = dict(n_fft=n_fft, hop_length=hop, win_length=win, center=center, length=length)
    ours = np.asarray(_jit(istft, **kw)(spec))
    ref = librosa.istft(spec.swapaxes(-1, -2), **kw)
    assert ours.shape == ref.shape
    # Near the uncentred edges the Hann envelope falls to ~1e-10 and both results divide
    # float32 noise by it; compare where the envelope is well conditioned.
    start = n_fft // 2 if center else 0
    envelope = librosa.filters.window_sumsquare(
        window="hann", n_frames=25, win_length=win, n_fft=n_fft, hop_length=hop
    )[start:]
    envelope = librosa.util.fix_length(envelope, size=ours.shape[-1])
    good = envelope > 1e-3
    assert good.sum() > 0.5 * good.size
    np.testing.assert_allclose(ours[..., good], ref[..., good], atol=1e-4, rtol=1e-4)
    # Where no frame reaches (window zeros, zero-padding to `length`) both are exactly zero.
    np.testing.assert_array_equal(ours[..., envelope == 0], 0.0)
    np.testing.assert_array_equal(ref[..., envelope == 0], 0.0)


def test_jit_and_vmap_agree_with_eager():
    x = _signal((3, 4000))
    kw = dict(n_fft=400, hop_length=160, center=True)
    eager = stft(x, **kw)
    jitted = jax.jit(functools.partial(stft, **kw))(x)
    mapped = jax.vmap(functools.partial(stft, **kw))(x)
    np.testing.assert_allclose(jitted, eager, atol=1e-4)
    np.testing.assert_allclose(mapped, eager, atol=1e-4)
    back = jax.jit(jax.vmap(functools.partial(istft, **kw, length=4000)))(eager)
    np.testing.assert_allclose(back, x, atol=2e-6)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="shorter than n_fft"):
        stft(jnp.zeros(100), n_fft=400, hop_length=160)
    with pytest.raises(ValueError, match="reflect padding"):
        stft(jnp.zeros(100), n_fft=400, hop_length=160, center=True)
    with pytest.raises(ValueError, match="frequency bins"):
        istft(jnp.zeros((5, 100), jnp.complex64), n_fft=400, hop_length=160)
    with pytest.raises(ValueError, match="unknown window"):
        stft(jnp.zeros(1000), n_fft=400, hop_length=160, window="kaiser")
    with pytest.raises(ValueError, match="real floating"):
        stft(jnp.zeros(1000, jnp.int32), n_fft=400, hop_length=160)
