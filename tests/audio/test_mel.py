"""Mel scales and filterbanks: parity with librosa."""

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from jaxspeech.audio import hz_to_mel, mel_filterbank, mel_to_hz


@pytest.mark.parametrize("scale", ["slaney", "htk"])
def test_mel_scale_matches_librosa_and_inverts(scale):
    hz = np.array([0.0, 55.0, 440.0, 999.0, 1000.0, 1001.0, 4000.0, 8000.0, 11025.0])
    mel = hz_to_mel(hz, scale)
    np.testing.assert_allclose(mel, librosa.hz_to_mel(hz, htk=scale == "htk"), rtol=1e-12)
    np.testing.assert_allclose(mel_to_hz(mel, scale), hz, rtol=1e-12, atol=1e-9)
    # The jnp path (used under jit) agrees in float32.
    jitted = jax.jit(lambda f: mel_to_hz(hz_to_mel(f, scale), scale))(jnp.asarray(hz, jnp.float32))
    assert jitted.dtype == jnp.float32
    np.testing.assert_allclose(jitted, hz, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    "sample_rate,n_fft,n_mels,fmin,fmax",
    [(22050, 1024, 80, 0.0, 8000.0), (16000, 400, 80, 0.0, 8000.0), (24000, 1024, 100, 0.0, None),
     (44100, 2048, 128, 50.0, 12000.0)],
)
@pytest.mark.parametrize("scale", ["slaney", "htk"])
@pytest.mark.parametrize("norm", ["slaney", None])
def test_filterbank_matches_librosa(sample_rate, n_fft, n_mels, fmin, fmax, scale, norm):
    ours = mel_filterbank(
        sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, scale=scale, norm=norm
    )
    ref = librosa.filters.mel(
        sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=scale == "htk", norm=norm
    )
    assert ours.dtype == np.float32 and ours.shape == (n_fft // 2 + 1, n_mels)
    np.testing.assert_allclose(ours, ref.T, rtol=1e-6, atol=1e-8)


def test_slaney_norm_gives_unit_area_in_hz():
    fb = mel_filterbank(sample_rate=16000, n_fft=4096, n_mels=40, fmax=8000.0)
    bin_hz = 16000 / 4096
    np.testing.assert_allclose(fb.sum(axis=0) * bin_hz, 1.0, rtol=2e-2)


def test_bad_configs_raise_or_warn():
    with pytest.raises(ValueError, match="fmax"):
        mel_filterbank(sample_rate=16000, n_fft=400, n_mels=80, fmax=9000.0)
    with pytest.raises(ValueError, match="mel scale"):
        mel_filterbank(sample_rate=16000, n_fft=400, n_mels=80, scale="bark")
    with pytest.raises(ValueError, match="mel norm"):
        mel_filterbank(sample_rate=16000, n_fft=400, n_mels=80, norm="l2")
    with pytest.warns(UserWarning, match="cover no FFT bin"):
        mel_filterbank(sample_rate=16000, n_fft=128, n_mels=80)
