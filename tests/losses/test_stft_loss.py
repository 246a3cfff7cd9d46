import functools

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import torch

from jaxspeech.audio import log_mel
from jaxspeech.losses.stft import (
    DEFAULT_RESOLUTIONS,
    masked_log_mel,
    mel_l1_loss,
    multi_resolution_stft_loss,
    stft_magnitude,
)

RESOLUTIONS = DEFAULT_RESOLUTIONS + ((600, 120, 400),)  # a window shorter than n_fft too


def _signals(seed=0, batch=2, samples=5000):
    rng = np.random.default_rng(seed)
    target = rng.normal(size=(batch, samples)).astype(np.float32) * 0.3
    estimate = (target + 0.2 * rng.normal(size=target.shape)).astype(np.float32)
    return estimate, target


def _torch_magnitude(x, n_fft, hop, win, eps=1e-7):
    spec = torch.stft(torch.from_numpy(x).double(), n_fft, hop, win, window=torch.hann_window(win, dtype=torch.float64),
                      center=True, pad_mode="constant", return_complex=True)
    return torch.sqrt(torch.clamp(spec.abs() ** 2, min=eps))


def _torch_mr_stft(estimate, target, resolutions):
    """Parallel WaveGAN's loss per example (torch.stft), averaged over examples and resolutions."""
    sc, mag = [], []
    for n_fft, hop, win in resolutions:
        for x, y in zip(estimate, target):
            mx, my = _torch_magnitude(x, n_fft, hop, win), _torch_magnitude(y, n_fft, hop, win)
            sc.append(float(torch.linalg.norm(my - mx) / torch.linalg.norm(my)))
            mag.append(float(torch.mean(torch.abs(torch.log(my) - torch.log(mx)))))
    return float(np.mean(sc)), float(np.mean(mag))


def test_multi_resolution_stft_loss_matches_torch():
    estimate, target = _signals()
    mask = jnp.ones(target.shape, bool)
    loss, metrics = multi_resolution_stft_loss(estimate, target, mask, resolutions=RESOLUTIONS)
    sc, mag = _torch_mr_stft(estimate, target, RESOLUTIONS)
    np.testing.assert_allclose(float(metrics["stft_sc"]), sc, rtol=1e-4)
    np.testing.assert_allclose(float(metrics["stft_log_mag"]), mag, rtol=1e-4)
    np.testing.assert_allclose(float(loss), sc + mag, rtol=1e-4)


def test_stft_magnitude_matches_torch_layout():
    _, target = _signals(samples=3000)
    ours = np.asarray(stft_magnitude(jnp.asarray(target), (1024, 256, 1024)))
    theirs = _torch_magnitude(target, 1024, 256, 1024).numpy().transpose(0, 2, 1)  # torch is [B, bins, frames]
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_identical_signals_give_zero_loss():
    _, target = _signals()
    target, mask = jnp.asarray(target), jnp.ones(target.shape, bool)
    assert float(multi_resolution_stft_loss(target, target, mask)[0]) == 0.0
    assert float(mel_l1_loss(target, target, mask)[0]) == 0.0


def _padded_batch(estimate, target, lengths, total):
    """Right-pads each example to ``total`` samples with garbage (NaN and huge values) past its length."""
    est = np.full((len(lengths), total), np.nan, np.float32)
    tgt = np.full((len(lengths), total), 1e4, np.float32)
    for b, n in enumerate(lengths):
        est[b, :n], tgt[b, :n] = estimate[b, :n], target[b, :n]
    return jnp.asarray(est), jnp.asarray(tgt), jnp.asarray(np.arange(total)[None] < np.asarray(lengths)[:, None])


# The smallest and the largest default resolution; the longest n_fft exceeds the shortest example.
EDGE_RESOLUTIONS = functools.partial(multi_resolution_stft_loss, resolutions=((512, 128, 512), (2048, 512, 2048)))


@pytest.mark.parametrize("loss_fn", [EDGE_RESOLUTIONS, mel_l1_loss], ids=["mr_stft", "mel_l1"])
def test_padded_batch_equals_mean_of_examples_alone(loss_fn):
    estimate, target = _signals(seed=1)
    lengths = [5000, 1200]
    est, tgt, mask = _padded_batch(estimate, target, lengths, 6000)
    batch_loss, _ = loss_fn(est, tgt, mask)
    alone = [float(loss_fn(jnp.asarray(estimate[b:b + 1, :n]), jnp.asarray(target[b:b + 1, :n]),
                           jnp.ones((1, n), bool))[0]) for b, n in enumerate(lengths)]
    np.testing.assert_allclose(float(batch_loss), np.mean(alone), rtol=1e-5)
    grad = jax.grad(lambda e: loss_fn(e, tgt, mask)[0])(est)
    assert np.all(np.isfinite(np.asarray(grad)))
    assert np.all(np.asarray(grad)[~np.asarray(mask)] == 0.0)


def test_empty_rows_weigh_nothing():
    estimate, target = _signals(seed=2)
    mask = np.ones(target.shape, bool)
    mask[1] = False
    for loss_fn in (multi_resolution_stft_loss, mel_l1_loss):
        both = float(loss_fn(jnp.asarray(estimate), jnp.asarray(target), jnp.asarray(mask))[0])
        first = float(loss_fn(jnp.asarray(estimate[:1]), jnp.asarray(target[:1]), jnp.ones((1, 5000), bool))[0])
        np.testing.assert_allclose(both, first, rtol=1e-6)


def test_mel_l1_matches_librosa_filterbank_and_torch_stft():
    """HiFi-GAN's mel (torch.stft of the zero-padded signal, librosa slaney filters, ln of the clamp)."""
    estimate, target = _signals(seed=3, samples=4096)
    fb = torch.from_numpy(librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0)).double()

    def hifigan_mel(x):
        x = torch.nn.functional.pad(torch.from_numpy(x).double(), (384, 384))
        spec = torch.stft(x, 1024, 256, 1024, window=torch.hann_window(1024, dtype=torch.float64), center=False,
                          return_complex=True)
        magnitude = torch.sqrt(spec.abs() ** 2 + 1e-9)
        return torch.log(torch.clamp(fb @ magnitude, min=1e-5)).numpy()

    expected = np.mean(np.abs(hifigan_mel(estimate) - hifigan_mel(target)))
    loss, metrics = mel_l1_loss(jnp.asarray(estimate), jnp.asarray(target), jnp.ones(target.shape, bool))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
    assert float(metrics["mel_l1"]) == float(loss)


def test_masked_log_mel_interior_frames_equal_log_mel():
    """Only the edge padding differs from the preset's reflect padding: frames clear of it agree."""
    _, target = _signals(seed=4, samples=4096)
    ours, mask = masked_log_mel(jnp.asarray(target), jnp.ones(target.shape, bool), "tts_22k")
    reference = log_mel(jnp.asarray(target), "tts_22k")
    assert ours.shape == reference.shape == (2, 16, 80) and bool(jnp.all(mask))
    np.testing.assert_allclose(np.asarray(ours)[:, 2:-2], np.asarray(reference)[:, 2:-2], atol=2e-4)


def test_bad_input_is_named():
    x = jnp.zeros((2, 4000))
    with pytest.raises(ValueError, match="resolutions is empty"):
        multi_resolution_stft_loss(x, x, jnp.ones((2, 4000), bool), resolutions=())
    with pytest.raises(ValueError, match="win_length"):
        multi_resolution_stft_loss(x, x, jnp.ones((2, 4000), bool), resolutions=((512, 128, 1024),))
    with pytest.raises(AssertionError):
        multi_resolution_stft_loss(x, x[:, :100], jnp.ones((2, 4000), bool))
    with pytest.raises(ValueError, match="dynamic_range"):
        mel_l1_loss(x, x, jnp.ones((2, 4000), bool), preset="whisper_80")
