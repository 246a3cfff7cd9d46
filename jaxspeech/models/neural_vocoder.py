"""Trainable log-mel -> waveform vocoders: a generator, its reconstruction loss and, when the config
names discriminators, HiFi-GAN's adversarial training.

Generators (``config.generator``): "istft" (``jaxspeech.models.vocoder``, Vocos' ConvNeXt + inverse
STFT head, its fields flat in the config; ``source="mel_f0"`` adds a harmonic source at the pitch read off
the mel) and "hifigan" (``jaxspeech.models.hifigan``, HiFi-GAN's
config.json fields flat in the config; ``n_mels`` is its ``num_mels`` and its hop must be the preset's).
Both map ``(mel [B,T,F], mel_mask [B,T]) -> audio [B, T*hop]``, zero past each row's valid frames.

Losses (Kong et al. 2020, eq. 6-7; ``config.loss`` and ``config.adversarial``):
  reconstruction  stft_weight * multi-resolution STFT + mel_weight * log-mel L1 (HiFi-GAN: 0 and 45)
  generator       reconstruction + adversarial_weight * sum_d mean((1 - D_d(G(s)))^2)
                  + feature_weight * sum over layers of mean |D_l(x) - D_l(G(s))|
  discriminator   sum_d mean((1 - D_d(x))^2) + mean(D_d(G(s))^2)
with ``adversarial.discriminators`` a subset of ("mpd", "msd") (HiFi-GAN's multi-period and
multi-scale discriminators, hidden widths divided by ``adversarial.channel_divisor``); empty = no
adversarial training. Both signals are zeroed past the valid samples before a discriminator sees
them, so padding carries no realness cue.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxspeech.audio.features import get_preset
from jaxspeech.losses import gan
from jaxspeech.losses.stft import mel_l1_loss, multi_resolution_stft_loss
from jaxspeech.models import hifigan, vocoder, vocos_import
from jaxspeech.models.hifigan.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator, Output

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]
GENERATORS = ("istft", "hifigan")
FRAME_MULTIPLE = 64  # mel_to_audio_fn pads frames to a multiple of this: few jit shapes
DISCRIMINATORS = {"mpd": MultiPeriodDiscriminator, "msd": MultiScaleDiscriminator}


def _check_hifigan_preset(generator: hifigan.HifiGanConfig, preset: str, what: str) -> None:
    """A HiFi-GAN generator must read the preset's mel bins and upsample by its hop."""
    target = get_preset(preset)
    if (generator.num_mels, generator.hop) != (target.n_mels, target.hop_length):
        raise ValueError(f"{what} reads {generator.num_mels} mels and upsamples by {generator.hop}; preset "
                         f"{preset!r} has {target.n_mels} mels at hop {target.hop_length}")


def hifigan_config(config: Mapping[str, Any]) -> hifigan.HifiGanConfig:
    """The HiFi-GAN generator of a vocoder config (its mels and hop checked against the preset's)."""
    generator = hifigan.HifiGanConfig.from_dict({**config, "num_mels": config["n_mels"]})
    _check_hifigan_preset(generator, config["preset"], "the HiFi-GAN generator")
    return generator


def _generator(config: Mapping[str, Any]) -> str:
    kind = config["generator"]
    if kind not in GENERATORS:
        raise ValueError(f"unknown generator {kind!r}; known: {', '.join(GENERATORS)}")
    return kind


def init_generator(config: Mapping[str, Any], key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, params) of ``config.generator`` initialised from ``key``."""
    if _generator(config) == "hifigan":
        if config.get("source", "none") != "none":
            raise ValueError(f"source={config['source']!r} is the istft generator's (it sets the head's phase); "
                             "the hifigan generator has no source input")
        return hifigan.init(hifigan_config(config), key)
    return vocoder.init(config, key)


def generator_apply(config: Mapping[str, Any]) -> Callable[[nnx.GraphDef, nnx.State, jax.Array, jax.Array], jax.Array]:
    """``apply(graphdef, params, mel [B,T,F], mel_mask [B,T]) -> audio [B, T*hop]`` of ``config.generator``."""
    return hifigan.apply if _generator(config) == "hifigan" else vocoder.apply


def hop_length(config: Mapping[str, Any]) -> int:
    """Samples per mel frame (the preset's hop, which both generators produce)."""
    return get_preset(config["preset"]).hop_length


def mel_to_audio_fn(forward: Callable[[jax.Array, jax.Array], jax.Array], *, n_mels: int,
                    hop: int) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    """A jitted ``forward(mel [B,T,F], mel_mask [B,T]) -> audio [B, T*hop]`` as the numpy function
    ``fn(mel, mel_mask=None) -> audio``.

    mel: ``[T,F]`` or ``[B,T,F]``; mel_mask: bool ``[B,T]`` (right-padded; None = all valid).
    Returns float32 ``[T*hop]`` or ``[B,T*hop]``, zero past each example's valid frames. Frames are
    padded to a multiple of 64 inside, so ``forward`` compiles once per 64-frame length class.
    """

    def fn(mel: np.ndarray, mel_mask: np.ndarray | None = None) -> np.ndarray:
        mel = np.asarray(mel, np.float32)
        single = mel.ndim == 2
        mel = mel[None] if single else mel
        if mel.ndim != 3 or mel.shape[-1] != n_mels or mel.shape[1] == 0:
            raise ValueError(f"mel must be [T,{n_mels}] or [B,T,{n_mels}] with T > 0, got {mel.shape}")
        mask = np.ones(mel.shape[:2], bool) if mel_mask is None else np.asarray(mel_mask, bool).reshape(mel.shape[:2])
        frames = mel.shape[1]
        pad = -frames % FRAME_MULTIPLE
        waveform = forward(np.pad(mel, ((0, 0), (0, pad), (0, 0))), np.pad(mask, ((0, 0), (0, pad))))
        waveform = np.asarray(waveform)[:, : frames * hop]
        return waveform[0] if single else waveform

    return fn


def imported_vocoder(path: str, *, preset: str) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    """A PyTorch vocoder checkpoint as ``fn(mel, mel_mask=None) -> audio`` (see :func:`mel_to_audio_fn`)
    for log-mels of ``preset``, whose mel bins and hop it must match: a HiFi-GAN generator file
    (HiFi-GAN's or Matcha-TTS's ``generator_v1``, config.json beside it or V1) or a Vocos directory
    (config.yaml + pytorch_model.bin, whose mel features must be ``preset``)."""
    if os.path.isdir(path):
        config, graphdef, params = vocos_import.import_vocos_checkpoint(path)
        if config.preset != preset:
            raise ValueError(f"Vocos {path} vocodes {config.preset!r} mels, not {preset!r}")
        apply, n_mels, hop = vocoder.apply, config.n_mels, hop_length(config)
    else:
        config, graphdef, params = hifigan.import_hifigan_checkpoint(path)
        _check_hifigan_preset(config, preset, f"HiFi-GAN {path}")
        apply, n_mels, hop = hifigan.apply, config.num_mels, config.hop
    forward = jax.jit(lambda mel, mask: apply(graphdef, params, mel, mask))
    return mel_to_audio_fn(forward, n_mels=n_mels, hop=hop)


class Discriminators(nnx.Module):
    """The discriminators named in ``kinds`` side by side: wave [B, S] -> one Output per sub-discriminator."""

    def __init__(self, kinds: Sequence[str], *, channel_divisor: int, rngs: nnx.Rngs):
        unknown = sorted(set(kinds) - set(DISCRIMINATORS))
        if unknown or not kinds:
            raise ValueError(f"discriminators must be a non-empty subset of {sorted(DISCRIMINATORS)}, got {kinds}")
        self.parts = nnx.List([DISCRIMINATORS[k](channel_divisor=channel_divisor, rngs=rngs) for k in kinds])

    def __call__(self, wave: jax.Array) -> list[Output]:
        return [output for part in self.parts for output in part(wave)]


def adversarial(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` trains against discriminators."""
    return len(config["adversarial"]["discriminators"]) > 0


def init_discriminators(config: Mapping[str, Any], key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, params) of ``config.adversarial``'s discriminators."""
    a = config["adversarial"]
    model = Discriminators(tuple(a["discriminators"]), channel_divisor=int(a["channel_divisor"]),
                           rngs=nnx.Rngs(params=key))
    return nnx.split(model, nnx.Param)


def _signals(config: Mapping[str, Any], graphdef: nnx.GraphDef, params: nnx.State, batch: Batch):
    """(estimate, target, mask) [B, S]: the generator's waveform and the recording, zeroed outside
    the samples valid in both ``audio_mask`` and the frames of ``mel_mask``."""
    mel, mel_mask, audio, audio_mask = batch["mel"], batch["mel_mask"], batch["audio"], batch["audio_mask"]
    hop = hop_length(config)
    if audio.shape[1] != mel.shape[1] * hop:
        raise ValueError(f"audio has {audio.shape[1]} samples, {mel.shape[1]} mel frames need {mel.shape[1] * hop}")
    estimate = generator_apply(config)(graphdef, params, mel, mel_mask).astype(jnp.float32)
    mask = audio_mask & jnp.repeat(mel_mask, hop, axis=1)
    return jnp.where(mask, estimate, 0.0), jnp.where(mask, audio.astype(jnp.float32), 0.0), mask


def reconstruction_loss(config: Mapping[str, Any], estimate: jax.Array, target: jax.Array,
                        mask: jax.Array) -> tuple[jax.Array, Metrics]:
    """``stft_weight`` * multi-resolution STFT + ``mel_weight`` * log-mel L1 of ``config.loss`` over
    the valid samples of ``mask`` [B, S]. Metrics: "stft_sc", "stft_log_mag", "mel_l1"."""
    loss = config["loss"]
    resolutions = tuple(tuple(int(v) for v in r) for r in loss["resolutions"])
    stft, stft_metrics = multi_resolution_stft_loss(estimate, target, mask, resolutions=resolutions)
    mel, mel_metrics = mel_l1_loss(estimate, target, mask, preset=config["preset"])
    return float(loss["stft_weight"]) * stft + float(loss["mel_weight"]) * mel, {**stft_metrics, **mel_metrics}


def make_loss_fn(graphdef: nnx.GraphDef, config: Mapping[str, Any]):
    """``loss_fn(params, batch, key) -> (loss, metrics)``: the reconstruction loss of the generator on a
    batch with ``mel, mel_mask, audio [B, T*hop], audio_mask``. Metrics add "vocoder_loss" (= loss).
    The generators are deterministic: ``key`` is ignored."""

    def loss_fn(params: nnx.State, batch: Batch, key: jax.Array) -> tuple[jax.Array, Metrics]:
        del key
        loss, metrics = reconstruction_loss(config, *_signals(config, graphdef, params, batch))
        return loss, {**metrics, "vocoder_loss": loss}

    return loss_fn


def make_gan_losses(generator: nnx.GraphDef, discriminators: nnx.GraphDef, config: Mapping[str, Any]):
    """``(generator_loss, discriminator_loss)`` for ``jaxspeech.train.make_gan_train_step``:
    ``generator_loss(g_params, d_params, batch, key)`` and ``discriminator_loss(d_params, g_params,
    batch, key)``, each ``-> (loss, metrics)``. Generator metrics: the reconstruction's plus
    "vocoder_loss" (the reconstruction term), "adversarial", "feature_matching"."""
    a = config["adversarial"]
    adversarial_weight, feature_weight = float(a["adversarial_weight"]), float(a["feature_weight"])

    def judge(d_params, wave):
        return nnx.merge(discriminators, d_params)(wave)

    def generator_loss(g_params, d_params, batch, key):
        del key
        estimate, target, mask = _signals(config, generator, g_params, batch)
        reconstruction, metrics = reconstruction_loss(config, estimate, target, mask)
        real, generated = judge(d_params, target), judge(d_params, estimate)
        adversarial_term = gan.generator_adversarial_loss([scores for scores, _ in generated])
        matching = gan.feature_matching_loss([f for _, f in real], [f for _, f in generated], weight=feature_weight)
        loss = reconstruction + adversarial_weight * adversarial_term + matching
        return loss, {**metrics, "vocoder_loss": reconstruction, "adversarial": adversarial_term,
                      "feature_matching": matching}

    def discriminator_loss(d_params, g_params, batch, key):
        del key
        estimate, target, _ = _signals(config, generator, g_params, batch)
        real, generated = judge(d_params, target), judge(d_params, estimate)
        loss = gan.discriminator_loss([s for s, _ in real], [s for s, _ in generated])
        return loss, {}

    return generator_loss, discriminator_loss
