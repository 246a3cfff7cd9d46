"""The text side of Matcha-TTS / Grad-TTS: phoneme + speaker embeddings -> conv prenet -> RoPE
transformer -> frame-level means mu [B,L,n_mels]; a duration predictor on the detached encoder
output; monotonic alignment search (MAS) between mu and the mel for training.

The encoder is split at the prenet so that the prosody parts (``prosody.py``) can add the terminal
intonation style to the prenet states of the words before phrase boundaries (ProsodyFM).

Two architectures (``encoder.architecture``): "pre_ln", a pre-LN RoPE transformer with a final
LayerNorm (``nn.transformer``), and "matcha", Matcha-TTS's own (Glow-TTS's post-LN encoder with
RoPE on half of each head and conv(3) feed-forwards, ``nn.post_ln_transformer``; its prenet
normalises before the ReLU; LayerNorm epsilon 1e-4 throughout, duration predictor included), which
imported Matcha-TTS checkpoints use (``matcha_import``).
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.kernels.monotonic_alignment import durations_from_path, gaussian_log_likelihood, monotonic_alignment
from jaxspeech.models.tts.conv_stack import ConvStack, masked
from jaxspeech.nn import post_ln_transformer
from jaxspeech.nn.post_ln_transformer import PostLNTransformer
from jaxspeech.nn.transformer import Transformer

ARCHITECTURES = ("pre_ln", "matcha")
MATCHA_FF_KERNEL = 3  # the feed-forward convolution of every published Matcha-TTS encoder


def norm_epsilon(architecture: str) -> float:
    """LayerNorm epsilon of the encoder side (prenet, encoder, duration predictor) of ``architecture``."""
    return post_ln_transformer.EPSILON if architecture == "matcha" else 1e-6


class TextEncoder(nnx.Module):
    """``prenet(tokens, mask, speaker) -> states [B,L,D]``; ``__call__(states, mask) -> (hidden
    [B,L,D], mu [B,L,n_mels])``. Padded token ids are never read."""

    def __init__(self, vocab_size: int, num_speakers: int, n_mels: int, *, d_model: int, num_layers: int,
                 num_heads: int, ff_mult: int, prenet_layers: int, prenet_kernel: int, dropout: float,
                 architecture: str, rngs: nnx.Rngs):
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown encoder architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
        self.d_model = d_model
        self.embed = nnx.Embed(vocab_size, d_model, rngs=rngs)
        self.speaker = nnx.Embed(num_speakers, d_model, rngs=rngs)
        matcha = architecture == "matcha"
        self.prenet_convs = ConvStack(d_model, d_model, prenet_layers, prenet_kernel, dropout, norm_first=matcha,
                                      epsilon=norm_epsilon(architecture), rngs=rngs)
        # Matcha's ConvReluNorm: x + proj(convs(x)), proj zero-initialised (starts as the identity).
        self.prenet_proj = nnx.Linear(d_model, d_model, kernel_init=nnx.initializers.zeros, rngs=rngs)
        if matcha:
            self.transformer = PostLNTransformer(d_model, num_layers, num_heads, ff_mult=ff_mult,
                                                 ff_kernel=MATCHA_FF_KERNEL, rotary_dims=d_model // num_heads // 2,
                                                 dropout=dropout, rngs=rngs)
        else:
            self.transformer = Transformer(d_model, num_layers, num_heads, ff_mult=ff_mult, dropout=dropout,
                                           rngs=rngs)
        self.mean_proj = nnx.Linear(d_model, n_mels, rngs=rngs)

    def prenet(self, tokens: jax.Array, mask: jax.Array, speaker: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
        chex.assert_rank([tokens, mask, speaker], [2, 2, 1])
        chex.assert_equal_shape([tokens, mask])
        chex.assert_equal_shape_prefix([tokens, speaker], 1)
        x = self.embed(jnp.where(mask, tokens, 0)) * math.sqrt(self.d_model) + self.speaker(speaker)[:, None, :]
        x = masked(x, mask)
        return masked(x + self.prenet_proj(self.prenet_convs(x, mask, rngs)), mask)

    def __call__(self, states: jax.Array, mask: jax.Array, rngs: nnx.Rngs | None) -> tuple[jax.Array, jax.Array]:
        hidden = self.transformer(states, mask, rngs=rngs)
        return hidden, masked(self.mean_proj(hidden), mask)


class DurationPredictor(nnx.Module):
    """Log durations [B,L] (zero on padding) from the *detached* encoder output [B,L,D] (Matcha)."""

    def __init__(self, d_model: int, *, channels: int, kernel: int, dropout: float, epsilon: float = 1e-6,
                 rngs: nnx.Rngs):
        self.body = ConvStack(d_model, channels, 2, kernel, dropout, epsilon=epsilon, rngs=rngs)
        self.proj = nnx.Linear(channels, 1, rngs=rngs)

    def __call__(self, hidden: jax.Array, mask: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
        body = self.body(jax.lax.stop_gradient(hidden), mask, rngs)
        return jnp.where(mask, self.proj(body)[..., 0], 0.0)


def align(mu: jax.Array, mel: jax.Array, token_mask: jax.Array, mel_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """MAS of normalised mel frames [B,T,F] to text means [B,L,F] under a unit Gaussian.

    Returns (path [B,L,T] 0/1 float32, durations [B,L] int32); no gradient flows through either.
    """
    path = monotonic_alignment(gaussian_log_likelihood(jax.lax.stop_gradient(mu), mel), token_mask, mel_mask)
    return path, durations_from_path(path)
