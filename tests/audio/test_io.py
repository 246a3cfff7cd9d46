"""load_audio / save_audio / resample on real files written to tmp_path."""

import numpy as np
import pytest
import soundfile as sf

from jaxspeech.audio import AudioError, load_audio, resample, save_audio


def _sine(freq, sample_rate, seconds=1.0, amplitude=0.5):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x, sample_rate):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.argmax(spectrum) * sample_rate / x.size


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="no such file") as info:
        load_audio(path, sample_rate=16000)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


def test_empty_wav(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="zero samples") as info:
        load_audio(path, sample_rate=16000)
    assert str(path) in str(info.value)


def test_corrupt_bytes(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x01garbage" + np.random.default_rng(0).bytes(500))
    with pytest.raises(AudioError, match="cannot decode") as info:
        load_audio(path, sample_rate=16000)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples(tmp_path, bad):
    path = tmp_path / "bad.wav"
    x = _sine(440, 16000, 0.1)
    x[100] = bad
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(path, sample_rate=16000)


def test_stereo_is_downmixed_by_mean(tmp_path):
    path = tmp_path / "stereo.flac"
    left, right = _sine(440, 16000, 0.5), _sine(1000, 16000, 0.5, amplitude=0.25)
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="PCM_24")
    mono = load_audio(path, sample_rate=16000)
    assert mono.dtype == np.float32 and mono.shape == left.shape
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-6)


def test_resampled_on_load_keeps_frequency(tmp_path):
    path = tmp_path / "tone16k.wav"
    sf.write(path, _sine(440.0, 16000), 16000, subtype="FLOAT")
    y = load_audio(path, sample_rate=22050)
    assert y.dtype == np.float32 and abs(y.size - 22050) <= 1
    assert _peak_hz(y, 22050) == pytest.approx(440.0, abs=1.5)
    # The amplitude survives too (away from the filter's edge transients).
    assert np.abs(y[2000:-2000]).max() == pytest.approx(0.5, rel=1e-2)


def test_resample_function():
    x = _sine(3000.0, 22050)
    y = resample(x, 22050, 16000)
    assert y.dtype == np.float32 and y.size == 16000
    assert _peak_hz(y, 16000) == pytest.approx(3000.0, abs=1.5)
    same = resample(x, 22050, 22050)
    np.testing.assert_array_equal(same, x)
    assert same is not x
    with pytest.raises(ValueError, match="positive"):
        resample(x, 0, 16000)


def test_save_audio_writes_clipped_pcm16(tmp_path):
    path = tmp_path / "out.wav"
    x = _sine(440.0, 16000, 0.25, amplitude=1.5)
    save_audio(path, x, 16000)
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.frames) == ("WAV", "PCM_16", 16000, x.size)
    back = load_audio(path, sample_rate=16000)
    np.testing.assert_allclose(back, np.clip(x, -1, 1), atol=1.0 / 32767)
    with pytest.raises(AudioError, match="NaN or infinite"):
        save_audio(path, np.full(10, np.nan), 16000)


def test_ogg_vorbis_loads(tmp_path):
    path = tmp_path / "tone.ogg"
    sf.write(path, _sine(440.0, 16000), 16000, format="OGG", subtype="VORBIS")
    y = load_audio(path, sample_rate=16000)
    assert y.dtype == np.float32 and y.size == 16000
    assert _peak_hz(y, 16000) == pytest.approx(440.0, abs=1.5)
