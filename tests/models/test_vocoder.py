import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxspeech.audio import estimate_f0, get_preset, log_mel, stft
from jaxspeech.audio.harmonic import harmonic_excitation
from jaxspeech.models import neural_vocoder, vocoder

HOP, N_FFT = 256, 1024


def tiny_config(**overrides):
    config = vocoder.default_config()
    # Two loss resolutions and unequal weights: the weighting is checked, and compiles stay quick.
    config.update(dict(dim=16, intermediate_dim=32, num_layers=2, kernel_size=5, generator="istft",
                       loss=dict(resolutions=((512, 128, 512), (1024, 256, 1024)), stft_weight=0.5, mel_weight=2.0)))
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def model():
    config = tiny_config()
    return (config, *vocoder.init(config, jax.random.key(0)))


def _true_spectrum(signal):
    """STFT frames of ``signal [B, T*hop]`` with "tts_22k" framing (reflect pad (n_fft - hop) / 2)."""
    padded = np.pad(signal, ((0, 0), ((N_FFT - HOP) // 2,) * 2), mode="reflect")
    spec = stft(jnp.asarray(padded), n_fft=N_FFT, hop_length=HOP)
    return jnp.abs(spec), jnp.angle(spec)


def test_istft_head_reproduces_the_signal_from_its_true_magnitude_and_phase():
    rng = np.random.default_rng(0)
    frames = 12
    signal = rng.normal(size=(2, frames * HOP)).astype(np.float32)
    magnitude, phase = _true_spectrum(signal)
    assert magnitude.shape == (2, frames, N_FFT // 2 + 1)
    head = jax.jit(functools.partial(vocoder.istft_head, n_fft=N_FFT, hop_length=HOP))
    rebuilt = head(magnitude, phase, jnp.ones((2, frames), bool))
    np.testing.assert_allclose(np.asarray(rebuilt), signal, atol=2e-5)
    # With only the first 7 frames valid, the frames that cover the first 7 hops still rebuild them
    # exactly (the normaliser counts only valid frames) and the rest is silence.
    mask = jnp.asarray(np.arange(frames)[None] < np.array([[frames], [7]]))
    rebuilt = np.asarray(head(magnitude, phase.at[1, 7:].set(1e3), mask))
    np.testing.assert_allclose(rebuilt[0], signal[0], atol=2e-5)
    np.testing.assert_allclose(rebuilt[1, : 7 * HOP], signal[1, : 7 * HOP], atol=2e-5)
    assert np.all(rebuilt[1, 7 * HOP:] == 0.0)


def _assert_padded_frames_are_ignored(graphdef, params, n_mels):
    forward = jax.jit(functools.partial(vocoder.apply, graphdef))
    rng = np.random.default_rng(1)
    frames, lengths = 20, np.array([20, 13])
    mel = rng.normal(size=(2, frames, n_mels)).astype(np.float32) - 5.0
    mask = np.arange(frames)[None] < lengths[:, None]
    garbage = np.where(mask[..., None], mel, 1e4).astype(np.float32)
    audio = np.asarray(forward(params, jnp.asarray(garbage), jnp.asarray(mask)))
    assert audio.shape == (2, frames * HOP) and np.all(np.isfinite(audio))
    for b, n in enumerate(lengths):
        alone = np.asarray(forward(params, jnp.asarray(mel[b:b + 1, :n]), jnp.ones((1, n), bool)))
        assert alone.shape == (1, n * HOP)
        np.testing.assert_allclose(audio[b, : n * HOP], alone[0], rtol=1e-4, atol=1e-5)
        assert np.all(audio[b, n * HOP:] == 0.0)


def test_output_is_frames_times_hop_and_ignores_padded_frames(model):
    _, graphdef, params = model
    _assert_padded_frames_are_ignored(graphdef, params, 80)


def _glide(seconds, f0_start, f0_end, sr=22050):
    """A harmonic signal (12 harmonics, 1/h amplitudes) whose F0 glides linearly between the two values."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0_start + (f0_end - f0_start) * t / seconds) / sr
    return (0.3 * sum(np.sin(h * phase) / h for h in range(1, 13))).astype(np.float32)


def test_the_head_rebuilds_the_harmonic_excitation_from_its_own_spectrum():
    # The source's spectrum is taken in the head's framing: magnitude and phase of the excitation's STFT,
    # through istft_head, give back the excitation itself (the samples the head's frames cover).
    preset = get_preset("tts_22k")
    frames = 24
    f0 = jnp.asarray(np.linspace(90.0, 180.0, frames)[None], jnp.float32)
    voiced = jnp.asarray((np.arange(frames) >= 3)[None])
    mask = jnp.ones((1, frames), bool)
    spectrum = vocoder.excitation_spectrum(f0, voiced, mask, preset=preset, n_fft=N_FFT)
    assert spectrum.shape == (1, frames, N_FFT // 2 + 1)
    excitation = harmonic_excitation(f0, voiced, sample_rate=22050, n_fft=N_FFT, hop_length=HOP)
    rebuilt = vocoder.istft_head(jnp.abs(spectrum), jnp.angle(spectrum), mask, n_fft=N_FFT, hop_length=HOP)
    pad = (N_FFT - HOP) // 2
    np.testing.assert_allclose(np.asarray(rebuilt[0]), np.asarray(excitation[0, pad:pad + frames * HOP]), atol=1e-4)


def test_the_source_phase_puts_the_mels_pitch_in_the_waveform():
    # The true magnitude of a gliding tone under the phase of the excitation read off its own mel (no learnt
    # correction) has the tone's pitch; the same magnitude with zero phase has none to speak of.
    preset = get_preset("tts_22k_128")
    signal = _glide(1.2, 110.0, 160.0)
    frames = signal.shape[0] // HOP
    signal = signal[: frames * HOP]
    mel = log_mel(jnp.asarray(signal), preset)[None, :frames]
    mask = jnp.ones((1, frames), bool)
    magnitude, _ = _true_spectrum(signal[None])
    phase = vocoder.source_phase(mel, mask, preset, n_fft=N_FFT)
    rendered = vocoder.istft_head(magnitude, phase, mask, n_fft=N_FFT, hop_length=HOP)
    flat = vocoder.istft_head(magnitude, jnp.zeros_like(phase), mask, n_fft=N_FFT, hop_length=HOP)
    truth_f0, truth_voiced = (np.asarray(x) for x in estimate_f0(jnp.asarray(signal), preset))
    for audio_out, close in ((rendered, True), (flat, False)):
        f0, voiced = (np.asarray(x) for x in estimate_f0(audio_out[0], preset))
        both = voiced & truth_voiced
        cents = np.abs(1200 * np.log2(f0[both] / truth_f0[both])) if both.any() else np.array([1e4])
        if close:
            assert both.mean() > 0.8 and np.median(cents) < 15, (both.mean(), np.median(cents))
        else:
            assert both.mean() < 0.5 or np.median(cents) > 50, (both.mean(), np.median(cents))


def test_a_source_filter_vocoder_ignores_padded_frames():
    config = tiny_config(preset="tts_22k_128", n_mels=128, source="mel_f0")
    graphdef, params = vocoder.init(config, jax.random.key(0))
    _assert_padded_frames_are_ignored(graphdef, params, 128)


def _tiny_batch(frames=16, seed=2):
    rng = np.random.default_rng(seed)
    t = np.arange(frames * HOP) / 22050.0
    audio = 0.3 * np.sin(2 * np.pi * 220.0 * t)[None] * (1.0 + 0.2 * rng.normal(size=(2, 1)))
    audio = audio.astype(np.float32)
    return {"audio": jnp.asarray(audio), "audio_mask": jnp.ones(audio.shape, bool),
            "mel": log_mel(jnp.asarray(audio), "tts_22k"), "mel_mask": jnp.ones((2, frames), bool)}


def test_a_few_adam_steps_decrease_the_loss(model):
    config, graphdef, params = model
    # A weak-typed parameter would change the jit signature after the first update (a recompile per step).
    assert not any(leaf.weak_type for leaf in jax.tree.leaves(params))
    loss_fn = neural_vocoder.make_loss_fn(graphdef, config)
    batch = _tiny_batch()
    optimizer = optax.adam(3e-3)

    @jax.jit
    def step(params, opt_state):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, jax.random.key(0))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, metrics

    opt_state = optimizer.init(params)
    losses = []
    for _ in range(12):
        params, opt_state, loss, metrics = step(params, opt_state)
        losses.append(float(loss))
    assert set(metrics) == {"stft_sc", "stft_log_mag", "mel_l1", "vocoder_loss"}
    expected = 0.5 * (metrics["stft_sc"] + metrics["stft_log_mag"]) + 2.0 * metrics["mel_l1"]
    np.testing.assert_allclose(float(metrics["vocoder_loss"]), float(expected), rtol=1e-5)
    assert losses[-1] < 0.8 * losses[0], losses


def test_samples_of_masked_frames_leave_the_loss(model):
    config, graphdef, params = model
    batch = _tiny_batch()
    # Frames masked in mel_mask drop their samples from the loss even where audio_mask is True.
    half = dict(batch, mel_mask=batch["mel_mask"].at[:, 8:].set(False), audio=batch["audio"].at[:, 8 * HOP:].set(9.0))
    short = {k: v[:, :8] if k.startswith("mel") else v[:, : 8 * HOP] for k, v in batch.items()}
    loss_fn = jax.jit(neural_vocoder.make_loss_fn(graphdef, config))
    np.testing.assert_allclose(float(loss_fn(params, half, None)[0]), float(loss_fn(params, short, None)[0]),
                               rtol=1e-5)


def test_bad_config_and_batch_are_named(model):
    with pytest.raises(ValueError, match="n_mels"):
        vocoder.init(tiny_config(n_mels=40), jax.random.key(0))
    with pytest.raises(ValueError, match="kernel_size"):
        vocoder.init(tiny_config(kernel_size=4), jax.random.key(0))
    with pytest.raises(ValueError, match="n_fft"):
        vocoder.init(tiny_config(n_fft=1023), jax.random.key(0))
    with pytest.raises(ValueError, match="source must be one of"):
        vocoder.init(tiny_config(source="nsf"), jax.random.key(0))
    config, graphdef, params = model
    batch = _tiny_batch()
    batch["audio"] = batch["audio"][:, :-1]
    batch["audio_mask"] = batch["audio_mask"][:, :-1]
    with pytest.raises(ValueError, match="samples"):
        neural_vocoder.make_loss_fn(graphdef, config)(params, batch, None)
