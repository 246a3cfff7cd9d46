"""The trainable vocoders' generator choice and adversarial losses: the composed HiFi-GAN objective against
Matcha-TTS's PyTorch discriminator and loss code, narrowed discriminators, and config errors."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
from flax import nnx

from jaxspeech.audio import log_mel
from jaxspeech.losses.stft import mel_l1_loss
from jaxspeech.models import hifigan, neural_vocoder
from jaxspeech.models.hifigan.discriminators import MultiScaleDiscriminator

matcha_models = pytest.importorskip("matcha.hifigan.models")

HOP = 256


def config(generator="istft", discriminators=("mpd",), channel_divisor=1, **generator_fields):
    fields = dict(dim=16, intermediate_dim=32, num_layers=1, kernel_size=5, n_fft=1024) if generator == "istft" else {}
    return ml_collections.ConfigDict(dict(
        generator=generator, preset="tts_22k", n_mels=80, **fields, **generator_fields,
        loss=dict(resolutions=((512, 128, 512),), stft_weight=0.0, mel_weight=45.0),
        adversarial=dict(discriminators=discriminators, channel_divisor=channel_divisor, adversarial_weight=1.0,
                         feature_weight=2.0)))  # fmt: skip


def test_hifigan_objective_matches_the_pytorch_discriminator_and_loss_code():
    """HiFi-GAN's train.py: loss_disc_f from the MPD on (y, y_g_hat.detach()); the generator's
    loss_gen_f + loss_fm_f (x2 inside feature_loss) + 45 * mel L1, for the waveform our generator made.
    The mel term is ``losses.stft.mel_l1_loss`` (tested there; its edge frames see zero padding where
    HiFi-GAN reflects, which keeps padded batches exact)."""
    c = config()
    g_graphdef, g_params = neural_vocoder.init_generator(c, jax.random.key(0))
    d_graphdef, d_params = neural_vocoder.init_discriminators(c, jax.random.key(1))
    torch.manual_seed(3)
    reference = matcha_models.MultiPeriodDiscriminator().eval()
    _, mpd_params = hifigan.discriminator_params_from_state_dict(
        {k: v.numpy() for k, v in reference.state_dict().items()}, "mpd")
    d_params = jax.tree.unflatten(jax.tree.structure(d_params), jax.tree.leaves(mpd_params))  # same module order

    frames = 12
    t = np.arange(frames * HOP) / 22050.0
    audio = (0.3 * np.sin(2 * np.pi * np.array([[180.0], [260.0]]) * t)).astype(np.float32)
    batch = {"audio": jnp.asarray(audio), "audio_mask": jnp.ones(audio.shape, bool),
             "mel": log_mel(jnp.asarray(audio), "tts_22k"), "mel_mask": jnp.ones((2, frames), bool)}  # fmt: skip
    generator_loss, discriminator_loss = neural_vocoder.make_gan_losses(g_graphdef, d_graphdef, c)
    g_loss, g_metrics = generator_loss(g_params, d_params, batch, None)
    d_loss, _ = discriminator_loss(d_params, g_params, batch, None)

    generated = np.asarray(neural_vocoder.generator_apply(c)(g_graphdef, g_params, batch["mel"], batch["mel_mask"]))
    y, y_hat = torch.from_numpy(audio)[:, None], torch.from_numpy(generated)[:, None]
    with torch.no_grad():
        real_scores, fake_scores, real_maps, fake_maps = reference(y, y_hat)
        want_d = matcha_models.discriminator_loss(real_scores, fake_scores)[0].item()
        want_adversarial = matcha_models.generator_loss(fake_scores)[0].item()
        want_matching = matcha_models.feature_loss(real_maps, fake_maps).item()
    mel_l1, _ = mel_l1_loss(jnp.asarray(generated), jnp.asarray(audio), jnp.ones(audio.shape, bool))
    np.testing.assert_allclose(float(d_loss), want_d, rtol=1e-4)
    np.testing.assert_allclose(float(g_metrics["adversarial"]), want_adversarial, rtol=1e-4)
    np.testing.assert_allclose(float(g_metrics["feature_matching"]), want_matching, rtol=1e-4)
    np.testing.assert_allclose(float(g_metrics["mel_l1"]), mel_l1, rtol=1e-4)
    np.testing.assert_allclose(float(g_loss), want_adversarial + want_matching + 45.0 * float(mel_l1), rtol=1e-4)


def test_discriminators_never_see_padding():
    """A row's samples past its valid frames are zeroed in both signals: garbage there changes no loss."""
    c = config(channel_divisor=16)
    g_graphdef, g_params = neural_vocoder.init_generator(c, jax.random.key(0))
    d_graphdef, d_params = neural_vocoder.init_discriminators(c, jax.random.key(1))
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.3, 0.3, (2, 10 * HOP)).astype(np.float32)
    mel_mask = np.arange(10)[None] < np.array([[10], [6]])
    batch = {"audio": audio, "audio_mask": np.ones(audio.shape, bool), "mel_mask": mel_mask,
             "mel": np.asarray(log_mel(jnp.asarray(audio), "tts_22k"))}  # fmt: skip
    noisy = dict(batch, audio=np.where(np.repeat(mel_mask, HOP, 1), audio, 5.0),
                 mel=np.where(mel_mask[..., None], batch["mel"], 7.0))  # fmt: skip
    for loss in neural_vocoder.make_gan_losses(g_graphdef, d_graphdef, c):
        first, second = (g_params, d_params) if loss.__name__ == "generator_loss" else (d_params, g_params)
        clean, dirty = (float(loss(first, second, b, None)[0]) for b in (batch, noisy))
        np.testing.assert_allclose(dirty, clean, rtol=1e-6)


def test_narrowed_discriminators_divide_widths_and_keep_groups_valid():
    msd = MultiScaleDiscriminator(channel_divisor=8, rngs=nnx.Rngs(0))
    first = msd.discriminators[0]
    widths = [conv.kernel.shape[-1] for conv in first.convs] + [first.conv_post.kernel.shape[-1]]
    assert widths == [16, 16, 32, 64, 128, 128, 128, 1]
    assert [conv.groups for conv in first.convs] == [1, 4, 16, 16, 16, 16, 1]
    scores, maps = first(jnp.zeros((2, 1000)))
    assert scores.shape[0] == 2 and len(maps) == 8
    with pytest.raises(ValueError, match="channel_divisor"):
        MultiScaleDiscriminator(channel_divisor=0, rngs=nnx.Rngs(0))


def test_hifigan_generator_from_a_vocoder_config():
    v1 = dict(upsample_rates=(8, 8, 2, 2), upsample_kernel_sizes=(16, 16, 4, 4), upsample_initial_channel=512,
              resblock="1", resblock_kernel_sizes=(3, 7, 11), resblock_dilation_sizes=((1, 3, 5),) * 3)
    assert neural_vocoder.hifigan_config(config("hifigan", **v1)) == hifigan.V1
    with pytest.raises(ValueError, match="upsamples by 128"):
        three_stages = dict(v1, upsample_rates=(8, 8, 2), upsample_kernel_sizes=(16, 16, 4))
        neural_vocoder.hifigan_config(config("hifigan", **three_stages))
    with pytest.raises(ValueError, match="unknown generator"):
        neural_vocoder.init_generator(config("wavenet"), jax.random.key(0))
    with pytest.raises(ValueError, match="hifigan generator has no source"):
        neural_vocoder.init_generator(config("hifigan", **v1, source="mel_f0"), jax.random.key(0))
    with pytest.raises(ValueError, match="subset"):
        neural_vocoder.init_discriminators(config(discriminators=("mrd",)), jax.random.key(0))
    assert not neural_vocoder.adversarial(config(discriminators=()))


def test_a_pytorch_hifigan_file_vocodes_like_the_original(tmp_path):
    """The file a TTS run takes as ``--vocoder``: config.json beside it, 64-frame padding inside."""
    small = hifigan.HifiGanConfig(upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8),
                                  upsample_initial_channel=32, resblock="2", resblock_kernel_sizes=(3,),
                                  resblock_dilation_sizes=((1, 2),))  # fmt: skip
    torch.manual_seed(0)
    reference = matcha_models.Generator(type("H", (), dataclasses.asdict(small))).eval()
    torch.save({"generator": reference.state_dict()}, tmp_path / "generator_v1")
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(small)))
    vocode = neural_vocoder.imported_vocoder(str(tmp_path / "generator_v1"), preset="tts_22k")
    mel = np.random.default_rng(0).standard_normal((2, 70, 80)).astype(np.float32) - 4.0
    with torch.no_grad():
        want = reference(torch.from_numpy(mel[1:, :30]).transpose(1, 2)).squeeze(1).numpy()[0]
    mask = np.arange(70)[None] < np.array([[70], [30]])
    audio = vocode(mel, mask)
    assert audio.shape == (2, 70 * HOP) and not audio[1, 30 * HOP:].any()
    np.testing.assert_allclose(audio[1, : 30 * HOP], want, atol=1e-4)
    np.testing.assert_allclose(vocode(mel[1, :30]), want, atol=1e-4)
    with pytest.raises(ValueError, match="hop 160"):
        neural_vocoder.imported_vocoder(str(tmp_path / "generator_v1"), preset="whisper_80")
