"""Conformer CTC speech recognizer: log-mel [B,T,F] -> per-frame token logits [B,T/4*up,V].

Architecture: per-frame LayerNorm over the mel bins (the input normalisation: it needs no corpus
statistics and cannot see padding) -> 4x convolutional subsampling -> Conformer blocks with RoPE
self-attention -> Linear to the vocabulary. Token 0 is the CTC blank.

Config fields (an ``ml_collections.ConfigDict`` or any mapping; ``default_config()`` lists them):
  n_mels                mel bins of the input features
  vocab_size            output classes, including the blank at id 0
  d_model               encoder width
  num_layers            Conformer blocks
  num_heads             attention heads (d_model / num_heads must be even, for RoPE)
  ff_mult               feed-forward hidden width = ff_mult * d_model
  conv_kernel           depthwise convolution kernel (odd)
  dropout               dropout rate inside the blocks (training only)
  subsampling_channels  channels of the two subsampling convolutions
  ctc_upsample          CTC frames emitted per encoder frame (the head predicts this many at once):
                        2 keeps the encoder at 1/4 rate while CTC sees 1/2 rate, so fast speech
                        with more characters than encoder frames can still be aligned
  specaugment           num_freq_masks, max_freq_width, num_time_masks, max_time_ratio
                        (see ``jaxspeech.data.specaugment.spec_augment``; zero masks disable it)

Pure form: ``graphdef, params = init(config, key)`` and
``apply(graphdef, params, mel, mel_mask, key=None)``; the model holds nothing but ``nnx.Param``s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jaxspeech.data.specaugment import spec_augment
from jaxspeech.losses.ctc import ctc_feasible, ctc_loss
from jaxspeech.nn.conformer import ConformerEncoder
from jaxspeech.nn.subsampling import ConvSubsampling, subsampled_length

_MODEL_FIELDS = (
    "n_mels",
    "vocab_size",
    "d_model",
    "num_layers",
    "num_heads",
    "ff_mult",
    "conv_kernel",
    "dropout",
    "subsampling_channels",
    "ctc_upsample",
)
_SPECAUGMENT_FIELDS = ("num_freq_masks", "max_freq_width", "num_time_masks", "max_time_ratio")

Batch = Mapping[str, jax.Array]


def default_config() -> ml_collections.ConfigDict:
    """A small Conformer (2.16M parameters at vocab 64) for 80-bin log-mels."""
    return ml_collections.ConfigDict(
        dict(
            n_mels=80,
            vocab_size=64,
            d_model=144,
            num_layers=4,
            num_heads=4,
            ff_mult=4,
            conv_kernel=15,
            dropout=0.1,
            subsampling_channels=64,
            ctc_upsample=1,
            specaugment=dict(num_freq_masks=2, max_freq_width=27, num_time_masks=10, max_time_ratio=0.05),
        )
    )


def _field(config: Mapping[str, Any], name: str, where: str = "config") -> Any:
    try:
        return config[name]
    except KeyError:
        raise KeyError(f"{where} has no field {name!r}") from None


class CTCRecognizer(nnx.Module):
    """Conformer CTC model. See the module docstring for the config fields."""

    def __init__(self, config: Mapping[str, Any], *, rngs: nnx.Rngs):
        n_mels, vocab_size, d_model, num_layers, num_heads, ff_mult, conv_kernel, dropout, channels, upsample = (
            _field(config, name) for name in _MODEL_FIELDS
        )
        if vocab_size < 2:
            raise ValueError(f"vocab_size must count the blank and at least one label, got {vocab_size}")
        self.input_norm = nnx.LayerNorm(n_mels, rngs=rngs)
        self.subsampling = ConvSubsampling(n_mels, d_model, channels=channels, rngs=rngs)
        self.encoder = ConformerEncoder(
            d_model, num_layers, num_heads, ff_mult=ff_mult, conv_kernel=conv_kernel, dropout=dropout, rngs=rngs
        )
        if upsample < 1:
            raise ValueError(f"ctc_upsample must be >= 1, got {upsample}")
        self.upsample = upsample
        self.head = nnx.Linear(d_model, vocab_size * upsample, rngs=rngs)

    def __call__(
        self, mel: jax.Array, mel_mask: jax.Array, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """mel [B,T,F], mel_mask [B,T] bool (right-padded); key: dropout key, None = deterministic.

        Returns (logits [B,T',V] float32, logit_mask [B,T'] bool),
        T' = ctc_upsample * (((T - 1) // 2 - 1) // 2).
        """
        chex.assert_rank([mel, mel_mask], [3, 2])
        chex.assert_type(mel_mask, bool)
        rngs = None if key is None else nnx.Rngs(dropout=key)
        # Zero the padding first: garbage there (even NaN) would otherwise reach the LayerNorm
        # parameters' gradients through 0 * NaN.
        mel = jnp.where(mel_mask[..., None], mel, 0.0)
        x, mask = self.subsampling(self.input_norm(mel), mel_mask)
        x = self.encoder(x, mask, rngs=rngs)
        b, t, _ = x.shape
        logits = self.head(x).reshape(b, t * self.upsample, -1)
        return logits.astype(jnp.float32), jnp.repeat(mask, self.upsample, axis=1)


def output_length(config: Mapping[str, Any], frames):
    """CTC frames the model emits for ``frames`` valid input frames (int or int array)."""
    return subsampled_length(frames) * _field(config, "ctc_upsample")


def init(config: Mapping[str, Any], key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Builds a CTCRecognizer and splits it into (graphdef, params)."""
    return nnx.split(CTCRecognizer(config, rngs=nnx.Rngs(params=key)), nnx.Param)


def apply(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    mel: jax.Array,
    mel_mask: jax.Array,
    *,
    key: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Pure forward pass: (logits [B,T',V], logit_mask [B,T']). key None = no dropout.

    ``graphdef`` is static: ``jax.jit(functools.partial(apply, graphdef))``.
    """
    return nnx.merge(graphdef, params)(mel, mel_mask, key=key)


def make_loss_fn(
    graphdef: nnx.GraphDef, config: Mapping[str, Any], *, train: bool = True
) -> Callable[[nnx.State, Batch, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]:
    """loss_fn(params, batch, key) -> (loss, metrics) for batches with mel, mel_mask, tokens, token_mask.

    train=True applies SpecAugment and dropout (each with its own part of ``key``); train=False
    ignores ``key`` and runs deterministically, for evaluation.

    loss = mean over feasible utterances of ctc_nll / max(label length, 1). Utterances with
    fewer output frames than labels + adjacent repeats cannot be aligned: they get weight 0 and
    are counted in metrics["ctc_infeasible"]. Metrics: "ctc_loss" (= loss), "ctc_infeasible"
    (count), "frames" (valid output frames in the batch).
    """
    augment = {name: _field(_field(config, "specaugment"), name, "config.specaugment") for name in _SPECAUGMENT_FIELDS}

    def loss_fn(params: nnx.State, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        mel, mel_mask = batch["mel"], batch["mel_mask"]
        tokens, token_mask = batch["tokens"], batch["token_mask"]
        if train:
            k_augment, k_dropout = jax.random.split(key)
            mel = spec_augment(mel, mel_mask, k_augment, **augment)
        else:
            k_dropout = None
        logits, logit_mask = apply(graphdef, params, mel, mel_mask, key=k_dropout)
        nll = ctc_loss(logits, logit_mask, tokens, token_mask)
        # Filler rows (no labels, no frames) pad a batch to its bucket shape: they weigh nothing.
        present = jnp.any(token_mask, axis=1)
        alignable = ctc_feasible(logit_mask, tokens, token_mask)
        feasible = alignable & present
        label_len = jnp.maximum(jnp.sum(token_mask, axis=1), 1).astype(jnp.float32)
        per_utterance = jnp.where(feasible, nll / label_len, 0.0)
        loss = jnp.sum(per_utterance) / jnp.maximum(jnp.sum(feasible), 1)
        metrics = {
            "ctc_loss": loss,
            "ctc_infeasible": jnp.sum(present & ~alignable).astype(jnp.int32),
            "frames": jnp.sum(logit_mask).astype(jnp.int32),
        }
        return loss, metrics

    return loss_fn
