"""log_mel presets: parity with librosa (tts_22k, vocos_24k), HiFi-GAN's torch code and transformers'
WhisperFeatureExtractor (whisper_80 / whisper_128); num_frames; jit, vmap, dtypes."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from jaxspeech.audio import PRESETS, MelPreset, get_preset, log_mel, num_frames


def _speechlike(num_samples, sample_rate, seed=0, batch=()):
    """Chirp + harmonics + noise: energy across the whole mel range, like voiced speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    phase = 2 * np.pi * (120.0 * t + 40.0 * np.sin(2 * np.pi * 0.7 * t))
    voiced = sum(np.sin(k * phase) / k for k in range(1, 30))
    return (0.2 * voiced + 0.01 * rng.standard_normal((*batch, num_samples))).astype(np.float32)


def _tts_reference_librosa(x):
    p = PRESETS["tts_22k"]
    pad = (p.n_fft - p.hop_length) // 2
    x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    spec = librosa.stft(x, n_fft=p.n_fft, hop_length=p.hop_length, win_length=p.win_length, center=False)
    magnitude = np.sqrt(np.abs(spec.astype(np.complex128)) ** 2 + 1e-9)
    fb = librosa.filters.mel(sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=0.0, fmax=8000.0)
    return np.log(np.maximum(np.einsum("mf,...ft->...tm", fb, magnitude), 1e-5))


@pytest.mark.parametrize("num_samples", [4000, 22050, 30001])
def test_tts_22k_matches_librosa(num_samples):
    x = _speechlike(num_samples, 22050, batch=(2,))
    x[1] *= 0.01  # a quiet example reaches the 1e-5 floor in some bins
    ours = np.asarray(log_mel(x, "tts_22k"))
    ref = _tts_reference_librosa(x)
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (2, num_frames(num_samples, "tts_22k"), 80)
    # Log-mel is a relative measure; 1e-3 is ~0.1 % of mel energy, far above float32 FFT noise.
    assert np.abs(ours - ref).max() <= 1e-3


def test_vocos_24k_matches_librosa_with_torchaudio_defaults():
    """torchaudio's MelSpectrogram(power=1) defaults as Vocos uses them: HTK mels, no norm, centred reflect."""
    x = _speechlike(24000, 24000, batch=(2,))
    x[1] *= 1e-4  # quiet enough that some bins reach the 1e-7 floor
    ref = librosa.feature.melspectrogram(y=x, sr=24000, n_fft=1024, hop_length=256, n_mels=100, center=True,
                                         pad_mode="reflect", power=1.0, htk=True, norm=None)  # fmt: skip
    ref = np.log(np.maximum(np.swapaxes(ref, -1, -2), 1e-7))
    ours = np.asarray(log_mel(x, "vocos_24k"))
    assert ours.shape == ref.shape == (2, num_frames(24000, "vocos_24k"), 100)
    assert np.abs(ours - ref).max() <= 1e-3


def test_tts_22k_matches_hifigan_torch_code():
    torch = pytest.importorskip("torch")
    x = _speechlike(11025, 22050, seed=3)
    # HiFi-GAN's meldataset.mel_spectrogram (also Matcha-TTS's), verbatim in torch.
    fb = torch.from_numpy(librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0, fmax=8000)).float()
    y = torch.nn.functional.pad(torch.from_numpy(x)[None, None], (384, 384), mode="reflect")[:, 0]
    spec = torch.stft(y, 1024, hop_length=256, win_length=1024, window=torch.hann_window(1024),
                      center=False, pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
    spec = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
    ref = torch.log(torch.clamp(torch.matmul(fb, spec), min=1e-5))[0].T.numpy()
    np.testing.assert_allclose(np.asarray(log_mel(x, "tts_22k")), ref, atol=1e-3)


def _whisper_extractor(n_mels):
    transformers = pytest.importorskip("transformers")
    return transformers.WhisperFeatureExtractor(feature_size=n_mels)


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("num_samples", [37_123, 496_000])  # 2.3 s, and 31 s (trimmed)
def test_whisper_pad_or_trim_matches_transformers(n_mels, num_samples):
    extractor = _whisper_extractor(n_mels)
    x = _speechlike(num_samples, 16000, seed=n_mels)
    ref = extractor(x, sampling_rate=16000, return_tensors="np")["input_features"][0].T
    ours = np.asarray(log_mel(x, f"whisper_{n_mels}", pad_or_trim=True))
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (3000, n_mels)
    # transformers documents 1e-5 agreement between its own numpy and torch paths; the
    # features span about [-1, 2].
    np.testing.assert_allclose(ours, ref, atol=2e-4)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_whisper_raw_length_matches_transformers(n_mels):
    extractor = _whisper_extractor(n_mels)
    x = _speechlike(24_321, 16000, seed=7)
    ref = extractor(x, sampling_rate=16000, padding="longest", return_tensors="np")["input_features"][0].T
    ours = np.asarray(log_mel(x, f"whisper_{n_mels}"))
    assert ours.shape == ref.shape == (num_frames(24_321, "whisper_80"), n_mels)
    np.testing.assert_allclose(ours, ref, atol=2e-4)
    # The pure-numpy path of transformers is a second, torch-free reference.
    ref_np = extractor._np_extract_fbank_features(x[None], "cpu")[0].T
    np.testing.assert_allclose(ours, ref_np, atol=2e-4)


def test_whisper_clamp_is_per_example_and_vmap_agrees():
    x = _speechlike(8000, 16000, seed=1, batch=(3,))
    x[1] *= 1e-3  # a much quieter example must keep its own 80 dB window
    batched = jax.jit(functools.partial(log_mel, preset="whisper_80"))(x)
    mapped = jax.vmap(lambda w: log_mel(w, "whisper_80"))(x)
    single = log_mel(x[1], "whisper_80")
    np.testing.assert_allclose(batched, mapped, atol=1e-5)
    np.testing.assert_allclose(batched[1], single, atol=1e-5)
    # The quiet example sits 60 dB down; clamping it at the *batch* peak minus 80 dB (2.0
    # after the /4) would lift its floor above loud_peak - 2.
    assert float(batched[1].min()) < float(batched[0].max()) - 2.0
    assert float(batched[1].max() - batched[1].min()) <= 2.0 + 1e-5


def test_jit_with_static_preset_and_vmap():
    x = _speechlike(5000, 22050, batch=(2,))
    preset = dataclasses.replace(PRESETS["tts_22k"], n_mels=64)
    fn = jax.jit(log_mel, static_argnames=("preset", "pad_or_trim"))
    out = fn(x, preset=preset)
    np.testing.assert_allclose(out, jax.vmap(lambda w: log_mel(w, preset))(x), atol=1e-5)
    assert out.shape == (2, num_frames(5000, preset), 64)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_num_frames_equals_log_mel_frames(name):
    preset = PRESETS[name]
    lengths = [preset.pad_samples + 1, 1023, 1024, 1025, 4000, 16000, 22050, 33333] + list(range(5000, 5400, 37))
    for n in lengths:
        if num_frames(n, name) < 1 or n <= preset.pad_samples:
            continue
        shape = jax.eval_shape(lambda w: log_mel(w, name), jax.ShapeDtypeStruct((n,), jnp.float32)).shape
        assert shape == (num_frames(n, name), preset.n_mels), (name, n)
    # Real (not just traced) outputs for two lengths.
    for n in (4321, 9000):
        assert log_mel(_speechlike(n, preset.sample_rate), name).shape[0] == num_frames(n, name)
    as_numpy = num_frames(np.array(lengths), name)
    assert as_numpy.dtype.kind == "i"
    assert list(as_numpy) == [num_frames(n, name) for n in lengths]
    as_jax = jax.jit(lambda n: num_frames(n, name))(jnp.array(lengths))
    assert list(np.asarray(as_jax)) == list(as_numpy)


def test_whisper_pad_or_trim_frames_and_short_inputs():
    assert num_frames(12345, "whisper_80", pad_or_trim=True) == 3000
    assert num_frames(480_000, "whisper_128") == 3000
    assert num_frames(10, "tts_22k") == 0
    with pytest.raises(ValueError, match="too short"):
        log_mel(jnp.zeros(300), "tts_22k")


def test_float32_outputs_stay_float32():
    x64 = _speechlike(4000, 22050).astype(np.float64)
    assert log_mel(x64, "tts_22k").dtype == jnp.float32
    assert log_mel(jnp.asarray(x64, jnp.bfloat16), "whisper_80").dtype == jnp.float32


def test_tts_gradient_is_finite_at_silence():
    grad = jax.grad(lambda w: log_mel(w, "tts_22k").sum())(jnp.zeros(4000))
    assert bool(jnp.all(jnp.isfinite(grad)))


def test_bad_preset_and_pad_or_trim_errors():
    with pytest.raises(ValueError, match="tts_22k, tts_22k_128, vocos_24k, whisper_128, whisper_80"):
        get_preset("whisper_tiny")
    with pytest.raises(ValueError, match="pad_or_trim"):
        log_mel(jnp.zeros(4000), "tts_22k", pad_or_trim=True)
    with pytest.raises(ValueError, match="padding"):
        dataclasses.replace(PRESETS["tts_22k"], padding="same")
    with pytest.raises(ValueError, match="float array"):
        log_mel(jnp.zeros(4000, jnp.int16), "tts_22k")
    assert get_preset(PRESETS["whisper_80"]) is PRESETS["whisper_80"]
    assert isinstance(get_preset("whisper_128"), MelPreset)
