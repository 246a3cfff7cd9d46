"""ProsodyFM's prosody parts (He et al. 2025) and a frame-level pitch predictor.

Phrase breaks need no module: the break token is an ordinary phoneme whose duration MAS and the
duration predictor learn. Terminal intonation: K learned intonation-shape tokens (tanh, GST style)
are attended by an LSTM encoding of the log-F0 contour of the last word before each boundary; the
style vector is added to that word's prenet states. An :class:`IntonationPredictor` on the
(detached) prenet states predicts the reference encoder's per-head token weights, so synthesis
needs no reference. The :class:`PitchPredictor` (FastSpeech 2's, not in Matcha or ProsodyFM)
predicts the normalised log-F0 and voicing of every frame from the length-regulated detached
encoder states, for a source-filter vocoder or a pitch-reading decoder.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from jaxspeech.audio import get_preset
from jaxspeech.audio.pitch_comb import harmonic_comb_mel
from jaxspeech.models.tts.conv_stack import ConvStack
from jaxspeech.nn.transformer import Transformer

BOUNDARY_KEYS = ("boundary_word_start", "boundary_word_end", "boundary_mask")
# What a pitch-reading decoder gets per frame (``pitch.decoder_input``): "log_f0", the normalised log-F0 and the
# voicing; "harmonic_comb", where the harmonics fall on the mel filters (``audio.pitch_comb``) and the voicing.
DECODER_PITCH_INPUTS = ("log_f0", "harmonic_comb")


class TerminalIntonationEncoder(nnx.Module):
    """GST-style attention of a pitch-contour encoding over K learned intonation-shape tokens.

    ``weights(contour [B,N,C]) -> [B,N,H,K]`` (softmax over K per head);
    ``style(weights [B,N,H,K]) -> [B,N,d_model]``; one-hot weights select a token. With
    ``contour_points``, ``reconstruct(style) -> [B,N,contour_points]`` decodes the contour back.
    """

    def __init__(self, d_model: int, *, num_tokens: int, lstm_hidden: int, attention_dim: int, num_heads: int,
                 contour_points: int | None = None, rngs: nnx.Rngs):
        if attention_dim % num_heads:
            raise ValueError(f"intonation attention_dim={attention_dim} not divisible by num_heads={num_heads}")
        if num_tokens < 2:
            raise ValueError(f"need at least 2 intonation tokens, got {num_tokens}")
        self.num_heads = num_heads
        token_dim = attention_dim // num_heads  # GST: tokens are E/h wide, shared by all heads
        self.lstm = nnx.OptimizedLSTMCell(1, lstm_hidden, rngs=rngs)
        self.tokens = nnx.Param(0.5 * jax.random.normal(rngs.params(), (num_tokens, token_dim)))
        self.query = nnx.Linear(lstm_hidden, attention_dim, rngs=rngs)
        self.key = nnx.Linear(token_dim, attention_dim, rngs=rngs)
        self.value = nnx.Linear(token_dim, attention_dim, rngs=rngs)
        self.out = nnx.Linear(attention_dim, d_model, rngs=rngs)
        self.contour_head = None if contour_points is None else nnx.Linear(d_model, contour_points, rngs=rngs)

    def _heads(self, x: jax.Array) -> jax.Array:
        return x.reshape(*x.shape[:-1], self.num_heads, -1)

    def weights(self, contour: jax.Array) -> jax.Array:
        chex.assert_rank(contour, 3)
        batch, boundaries, points = contour.shape
        steps = jnp.moveaxis(contour.reshape(batch * boundaries, points, 1), 1, 0).astype(jnp.float32)
        hidden = self.lstm.hidden_features
        carry = (jnp.zeros((batch * boundaries, hidden)), jnp.zeros((batch * boundaries, hidden)))
        _, outputs = jax.lax.scan(lambda c, x: self.lstm(c, x), carry, steps)
        query = self._heads(self.query(outputs[-1]).reshape(batch, boundaries, -1))  # [B,N,H,E/H]
        keys = self._heads(self.key(jnp.tanh(self.tokens[...])))  # [K,H,E/H]
        logits = jnp.einsum("bnhe,khe->bnhk", query, keys) / math.sqrt(query.shape[-1])
        return jax.nn.softmax(logits, axis=-1)

    def style(self, weights: jax.Array) -> jax.Array:
        values = self._heads(self.value(jnp.tanh(self.tokens[...])))  # [K,H,E/H]
        attended = jnp.einsum("bnhk,khe->bnhe", weights, values)
        return self.out(attended.reshape(*attended.shape[:2], -1))

    def reconstruct(self, style: jax.Array) -> jax.Array:
        return self.contour_head(style)


def boundary_spans(start: jax.Array, end: jax.Array, present: jax.Array, length: int) -> jax.Array:
    """[B,N,L] bool: token l lies in the word [start, end) of a present boundary n."""
    positions = jnp.arange(length)
    return (positions >= start[..., None]) & (positions < end[..., None]) & present[..., None]


def _boundary_features(states: jax.Array, start: jax.Array, end: jax.Array, present: jax.Array) -> jax.Array:
    """Per boundary: mean of ``states`` over the word [start, end) and the state at ``end`` (its
    punctuation), [B,N,2D]. states: [B,L,D]; start, end: [B,N]; present: [B,N] bool."""
    span = boundary_spans(start, end, present, states.shape[1])
    mean = jnp.einsum("bnl,bld->bnd", span.astype(states.dtype), states)
    mean = mean / jnp.maximum(jnp.sum(span, axis=-1, keepdims=True), 1).astype(states.dtype)
    after = jnp.take_along_axis(states, jnp.clip(end, 0, states.shape[1] - 1)[..., None], axis=1)
    return jnp.concatenate([mean, after], axis=-1)


class IntonationPredictor(nnx.Module):
    """Intonation-token logits [B,N,H,K] (per style head) from text: one transformer layer over the
    prenet states for sentence context, then an MLP over the boundary word's mean state and its
    punctuation state."""

    def __init__(self, d_model: int, num_heads: int, num_tokens: int, style_heads: int, ff_mult: int,
                 dropout: float, *, rngs: nnx.Rngs):
        self.style_heads, self.num_tokens = style_heads, num_tokens
        self.context = Transformer(d_model, 1, num_heads, ff_mult=ff_mult, dropout=dropout, rngs=rngs)
        self.hidden = nnx.Linear(2 * d_model, d_model, rngs=rngs)
        self.out = nnx.Linear(d_model, style_heads * num_tokens, rngs=rngs)

    def __call__(self, states, token_mask, start, end, present, rngs):
        context = self.context(states, token_mask, rngs=rngs)
        logits = self.out(jax.nn.silu(self.hidden(_boundary_features(context, start, end, present))))
        return logits.reshape(*logits.shape[:-1], self.style_heads, self.num_tokens)


def boundaries_of(inputs) -> dict[str, jax.Array] | None:
    """The three boundary arrays of ``inputs`` (a batch or keyword dict), None when all are absent."""
    given = [name for name in BOUNDARY_KEYS if inputs.get(name) is not None]
    if not given:
        return None
    if len(given) != len(BOUNDARY_KEYS):
        raise ValueError(f"boundary inputs come together: got {given}, need all of {list(BOUNDARY_KEYS)}")
    return {name: inputs[name] for name in BOUNDARY_KEYS}


def intonation_terms(logits: jax.Array, weights: jax.Array, present: jax.Array) -> dict[str, jax.Array]:
    """The predictor's soft cross-entropy to the reference encoder's detached per-head token weights
    (averaged over heads and present boundaries) and the accuracy of the head-averaged argmax.
    logits, weights: [B,N,H,K]; present: [B,N] bool."""
    target = jax.lax.stop_gradient(weights)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.sum(target * log_probs, axis=-1).mean(axis=-1)
    count = jnp.maximum(jnp.sum(present), 1)
    hits = jnp.argmax(log_probs.mean(axis=2), axis=-1) == jnp.argmax(target.mean(axis=2), axis=-1)
    return {"intonation_ce": jnp.sum(jnp.where(present, nll, 0.0)) / count,
            "intonation_accuracy": jnp.sum(present & hits) / count}


def contour_reconstruction(decoded: jax.Array, contour: jax.Array, present: jax.Array) -> jax.Array:
    """Sum over present boundaries of |decoded - contour|^2 over the sum of |contour|^2 (1 is no
    better than a flat contour). decoded, contour: [B,N,C]; present: [B,N]."""
    error = jnp.sum(jnp.square(decoded - contour), axis=-1)
    energy = jnp.sum(jnp.where(present, jnp.sum(jnp.square(contour), axis=-1), 0.0))
    return jnp.sum(jnp.where(present, error, 0.0)) / jnp.maximum(energy, 1e-6)


class PitchPredictor(nnx.Module):
    """Per mel frame (normalised log-F0, voicing logit) [B,T,2] from ``frames`` [B,T,D+2]: the
    length-regulated token states with, per frame, its token's first frame and frame count
    (see :func:`pitch_inputs`)."""

    def __init__(self, d_model: int, channels: int, layers: int, kernel: int, dropout: float, *, rngs: nnx.Rngs):
        self.body = ConvStack(d_model + 2, channels, layers, kernel, dropout, rngs=rngs)
        self.out = nnx.Linear(channels, 2, rngs=rngs)

    def __call__(self, frames: jax.Array, mask: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
        states, start, count = frames[..., :-2], frames[..., -2], jnp.maximum(frames[..., -1], 1.0)
        index = jnp.arange(frames.shape[1], dtype=frames.dtype)
        place = jnp.clip((index + 0.5 - start) / count, 0.0, 1.0)  # where in its token the frame lies
        x = jnp.concatenate([states, place[..., None], jnp.log(count)[..., None]], axis=-1)
        return self.out(self.body(x, mask, rngs))


def pitch_inputs(hidden: jax.Array, durations: jax.Array) -> jax.Array:
    """Token states [B,L,D] with each token's first frame and frame count appended, [B,L,D+2];
    expanded to frames (by the MAS path or length regulation) they feed :class:`PitchPredictor`."""
    durations = durations.astype(hidden.dtype)
    start = jnp.cumsum(durations, axis=1) - durations
    return jnp.concatenate([jax.lax.stop_gradient(hidden), start[..., None], durations[..., None]], axis=-1)


def f0_hz(pitch: ml_collections.ConfigDict, log_f0: jax.Array) -> jax.Array:
    """F0 in Hz from the normalised log-F0 ((ln F0 - pitch.log_f0_mean) / pitch.log_f0_std), any shape."""
    return jnp.exp(jnp.asarray(log_f0, jnp.float32) * pitch.log_f0_std + pitch.log_f0_mean)


def pitch_channels(pitch: ml_collections.ConfigDict) -> int:
    """Channels of :func:`pitch_condition`: 2 for "log_f0", the preset's mel filters + 1 for "harmonic_comb"."""
    if pitch.decoder_input not in DECODER_PITCH_INPUTS:
        raise ValueError(f"unknown pitch.decoder_input {pitch.decoder_input!r}; "
                         f"known: {', '.join(DECODER_PITCH_INPUTS)}")
    return 2 if pitch.decoder_input == "log_f0" else get_preset(pitch.mel_preset).n_mels + 1


def pitch_condition(pitch: ml_collections.ConfigDict, log_f0: jax.Array, voicing: jax.Array,
                    mask: jax.Array) -> jax.Array:
    """The decoder's pitch input [B,T,:func:`pitch_channels`] from the normalised log-F0 [B,T] ((ln F0 -
    pitch.log_f0_mean) / pitch.log_f0_std) and the voicing [B,T] (0/1, or a probability), zero where ``mask`` is
    False: (log-F0, voicing), or (the F0's :func:`~jaxspeech.audio.pitch_comb.harmonic_comb_mel` on
    ``pitch.mel_preset``'s filters x the voicing, voicing)."""
    chex.assert_equal_shape([log_f0, voicing, mask])
    voicing = voicing.astype(jnp.float32)
    if pitch_channels(pitch) == 2:
        channels = jnp.stack([log_f0.astype(jnp.float32), voicing], axis=-1)
    else:
        comb = harmonic_comb_mel(f0_hz(pitch, log_f0), pitch.mel_preset) * voicing[..., None]
        channels = jnp.concatenate([comb, voicing[..., None]], axis=-1)
    return jnp.where(mask[..., None], channels, 0.0)


def pitch_targets(pitch: ml_collections.ConfigDict, batch, mel_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The recording's normalised log-F0 [B,T] float32 and voicing [B,T] bool (False on padding)."""
    for name in ("log_f0", "voiced"):
        if name not in batch:
            raise KeyError(f"model.pitch.enabled needs batch[{name!r}] [B,T]; batch has {sorted(batch)}")
    chex.assert_equal_shape([batch["log_f0"], batch["voiced"], mel_mask])
    target = (batch["log_f0"].astype(jnp.float32) - pitch.log_f0_mean) / pitch.log_f0_std
    return target, batch["voiced"].astype(bool) & mel_mask


def pitch_terms(prediction: jax.Array, target: jax.Array, voiced: jax.Array,
                mel_mask: jax.Array) -> dict[str, jax.Array]:
    """pitch_mse (normalised log-F0 over the frames of utterances with some voicing), voicing_bce and
    voicing_accuracy (all valid frames). prediction: [B,T,2] (log-F0, voicing logit); target [B,T];
    voiced, mel_mask: [B,T] bool."""
    pitched = mel_mask & jnp.any(voiced, axis=1, keepdims=True)  # utterances with no voicing have no F0
    frames_count = jnp.maximum(jnp.sum(mel_mask), 1)
    bce = optax.sigmoid_binary_cross_entropy(prediction[..., 1], voiced.astype(jnp.float32))
    return {
        "pitch_mse": jnp.sum(jnp.where(pitched, jnp.square(prediction[..., 0] - target), 0.0))
        / jnp.maximum(jnp.sum(pitched), 1),
        "voicing_bce": jnp.sum(jnp.where(mel_mask, bce, 0.0)) / frames_count,
        "voicing_accuracy": jnp.sum(mel_mask & ((prediction[..., 1] > 0) == voiced)) / frames_count,
    }
