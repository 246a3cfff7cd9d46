"""Flow-matching text-to-speech: Matcha-TTS (Mehta et al. 2024) with ProsodyFM's phrase breaks and
terminal intonation encoder (He et al. 2025), as one NNX module with a pure form.

Pipeline (training): phoneme embedding + speaker embedding -> conv prenet -> (+ terminal
intonation style on the words before phrase boundaries) -> RoPE transformer -> text means mu
[B,L,n_mels] and, from the *detached* encoder states, log durations. MAS between mu and the
(normalised) mel gives durations (duration loss) and the frame-level means mu_y (prior loss);
mu_y, the speaker and the mask condition the flow-matching decoder (CFM loss), a Matcha 1D U-Net
or an adaLN-zero DiT. Synthesis: predicted durations -> length regulation -> ODE sampling.

Phrase breaks (ProsodyFM): the phoneme sequence carries a break token (``config.break_token``,
``jaxspeech.text.phrasing.BREAK``) at every word boundary. It is an ordinary token: MAS gives it
as many frames as the pause in the audio (>= 1), and the duration predictor learns break lengths
from those alignments with no prosodic labels. ``metrics["break_frames"]`` tracks them.

Terminal intonation: K learned intonation-shape tokens (tanh, GST style) are attended by an LSTM
encoding of the log-F0 contour of the last word before each boundary; the attended style vector
is added to that word's states after the prenet. A classifier on the (detached) prenet states
with one attention layer of context predicts, per boundary and head, the reference encoder's
token weights (soft cross-entropy against the detached weights [B,N,H,K]). At synthesis the
token weights are that predictor's per-head softmax, so the style vector is one the decoder saw
in training (a single argmax token shared by the heads is not), or a user's choice
(``intonation``: one token, all heads).

Optional frame-level pitch (``pitch.enabled``; FastSpeech 2's pitch predictor, not in Matcha or
ProsodyFM): a conv stack over the length-regulated (detached) encoder states, with each frame's
place inside its token, predicts the pitch processor's log-F0 and the voicing of every frame
(MSE on the normalised log-F0 + binary cross-entropy). ``generate`` returns them, so a
source-filter vocoder (``jaxspeech.audio.harmonic``) can render the predicted pitch exactly;
the decoder's mel then only has to carry the spectral envelope.

Optional (``intonation.reconstruction_weight`` > 0, not in ProsodyFM): a linear head decodes the
reference contour from the style vector, and its relative squared error joins the loss. Without
it nothing forces the token weights to carry the contour (the attention can stay near uniform,
so questions and statements get the same style); with it, the style is only as good as the
contour it can reproduce.

Batch contract (dict of arrays; right padding, masks are authoritative, padding may hold anything):
  tokens              [B,L] int     phoneme ids, with break tokens between words
  token_mask          [B,L] bool
  speaker             [B] int       in [0, num_speakers)
  mel                 [B,T,n_mels]  log-mel (natural log), un-normalised; the model normalises
                                    with config.mel_mean / mel_std (corpus statistics)
  mel_mask            [B,T] bool    1 <= valid tokens <= valid frames per utterance
  boundary_word_start [B,N] int     token index of the first phoneme of the word before boundary n
  boundary_word_end   [B,N] int     one past its last phoneme (exclusive; the token there is the
                                    boundary's punctuation, which the classifier also reads)
  boundary_mask       [B,N] bool    which boundaries exist (N may be 0; the four boundary keys
                                    may also be absent together: no intonation style)
  boundary_contour    [B,N,C] float log-F0 of that word relative to the speaker's register
                                    (``jaxspeech.data.tts``: minus the utterance's mean voiced
                                    log-F0), linearly resampled to C = config.intonation.contour_points
  boundary_kind       optional, ignored: the punctuation token carries the kind
  log_f0              [B,T] float   with pitch.enabled: the pitch processor's log-F0 per mel frame
                                    (continuous through unvoiced frames; ``jaxspeech.data.tts.pitch_track``)
  voiced              [B,T] bool    with pitch.enabled: the frame is voiced

Pure form: ``graphdef, params = init(config, key)``; ``encode(graphdef, params, ...)``;
``vector_field(graphdef, params)`` -> ``v(x_t, t, cond)``; ``make_loss_fn(graphdef, config)``;
``generate(graphdef, params, config, ...)``. The model holds nothing but ``nnx.Param``s.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxspeech.kernels.monotonic_alignment import durations_from_path, gaussian_log_likelihood, monotonic_alignment
from jaxspeech.losses.duration import duration_loss, prior_loss
from jaxspeech.losses.flow_matching import conditional_flow_matching
from jaxspeech.nn.dit import DiT
from jaxspeech.nn.length_regulator import durations_from_log, length_regulate
from jaxspeech.nn.transformer import Transformer
from jaxspeech.nn.unet1d import UNet1D
from jaxspeech.samplers.ode import sample_ode

Batch = Mapping[str, jax.Array]
BOUNDARY_KEYS = ("boundary_word_start", "boundary_word_end", "boundary_mask")
DECODERS = ("unet", "dit")
PITCH_CHANNELS = 2  # (normalised log-F0, voicing) per frame, when the decoder reads pitch
FRAME_BUCKET = 64  # generate() pads frames to a multiple of this, so jit sees few shapes


def default_config() -> ml_collections.ConfigDict:
    """Matcha-TTS sizes (encoder 192 x 6 layers, U-Net channels (256, 256)) and ProsodyFM's
    intonation encoder (6 tokens, LSTM 128, 8 heads x 384 units). Mel statistics: Matcha's
    LJSpeech values, to be replaced by the corpus's."""
    return ml_collections.ConfigDict(
        dict(
            n_mels=80,
            vocab_size=64,
            num_speakers=1,
            break_token=1,
            mel_mean=-5.536622,
            mel_std=2.116101,
            encoder=dict(d_model=192, num_layers=6, num_heads=2, ff_mult=4, prenet_layers=3, prenet_kernel=5,
                         dropout=0.1),
            duration_predictor=dict(channels=256, kernel=3, dropout=0.1),
            intonation=dict(num_tokens=6, contour_points=32, lstm_hidden=128, attention_dim=384, num_heads=8,
                            reconstruction_weight=0.0),
            # log_f0_mean/std normalise the target (ln 150 Hz, a quarter octave-ish spread): fixed, not measured.
            # condition_decoder: the flow decoder also reads (normalised log-F0, voicing) per frame: the
            # recording's in training (teacher forcing), the predictor's in synthesis (FastSpeech 2).
            pitch=dict(enabled=False, channels=256, layers=3, kernel=5, dropout=0.1, log_f0_mean=5.0,
                       log_f0_std=0.4, condition_decoder=False),
            decoder=dict(
                kind="unet",
                speaker_dim=64,
                unet=dict(channels=(256, 256), time_dim=1024, num_blocks=1, num_mid_blocks=2, num_heads=2,
                          ff_mult=4, norm_groups=8, dropout=0.05),
                dit=dict(d_model=256, num_layers=6, num_heads=4, ff_mult=4, dropout=0.1),
            ),
            flow=dict(
                sigma_min=1e-4,
                cond_drop_prob=0.1,  # CFG: share of training rows with null speaker and zero mu_y
                segment_frames=ml_collections.config_dict.placeholder(int),  # Matcha out_size
            ),
        )
    )


def _as_config(config: Mapping[str, Any]) -> ml_collections.ConfigDict:
    return config if isinstance(config, ml_collections.ConfigDict) else ml_collections.ConfigDict(config)


def _masked(x: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.where(mask[..., None], x, jnp.zeros((), x.dtype))


def _dropout(layer: nnx.Dropout, x: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
    return layer(x, deterministic=rngs is None, rngs=rngs)


class ConvStack(nnx.Module):
    """[conv(k) -> ReLU -> LayerNorm -> dropout] x layers on masked input (Matcha's prenet and
    duration predictor body). Convolutions read zeros from padding; output is masked."""

    def __init__(self, d_in: int, channels: int, layers: int, kernel: int, dropout: float, *, rngs: nnx.Rngs):
        if kernel % 2 == 0:
            raise ValueError(f"conv kernel must be odd so the convolution is centred, got {kernel}")
        dims = [d_in] + [channels] * layers
        self.convs = nnx.List([nnx.Conv(a, b, kernel_size=(kernel,), padding="SAME", rngs=rngs)
                               for a, b in zip(dims[:-1], dims[1:])])
        self.norms = nnx.List([nnx.LayerNorm(channels, rngs=rngs) for _ in range(layers)])
        self.drop = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, mask: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
        for conv, norm in zip(self.convs, self.norms):
            x = _dropout(self.drop, norm(jax.nn.relu(conv(_masked(x, mask)))), rngs)
        return _masked(x, mask)


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


def _boundary_features(states: jax.Array, start: jax.Array, end: jax.Array, present: jax.Array) -> jax.Array:
    """Per boundary: mean of ``states`` over the word [start, end) and the state at ``end`` (its
    punctuation), [B,N,2D]. states: [B,L,D]; start, end: [B,N]; present: [B,N] bool."""
    positions = jnp.arange(states.shape[1])
    span = (positions >= start[..., None]) & (positions < end[..., None]) & present[..., None]  # [B,N,L]
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


class PitchPredictor(nnx.Module):
    """Per mel frame (normalised log-F0, voicing logit) [B,T,2] from ``frames`` [B,T,D+2]: the
    length-regulated token states with, per frame, its token's first frame and frame count
    (see :func:`_pitch_inputs`)."""

    def __init__(self, d_model: int, channels: int, layers: int, kernel: int, dropout: float, *, rngs: nnx.Rngs):
        self.body = ConvStack(d_model + 2, channels, layers, kernel, dropout, rngs=rngs)
        self.out = nnx.Linear(channels, 2, rngs=rngs)

    def __call__(self, frames: jax.Array, mask: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
        states, start, count = frames[..., :-2], frames[..., -2], jnp.maximum(frames[..., -1], 1.0)
        index = jnp.arange(frames.shape[1], dtype=frames.dtype)
        place = jnp.clip((index + 0.5 - start) / count, 0.0, 1.0)  # where in its token the frame lies
        x = jnp.concatenate([states, place[..., None], jnp.log(count)[..., None]], axis=-1)
        return self.out(self.body(x, mask, rngs))


def _pitch_inputs(hidden: jax.Array, durations: jax.Array) -> jax.Array:
    """Token states [B,L,D] with each token's first frame and frame count appended, [B,L,D+2];
    expanded to frames (by the MAS path or length regulation) they feed :class:`PitchPredictor`."""
    durations = durations.astype(hidden.dtype)
    start = jnp.cumsum(durations, axis=1) - durations
    return jnp.concatenate([jax.lax.stop_gradient(hidden), start[..., None], durations[..., None]], axis=-1)


def _decoder_reads_pitch(config: ml_collections.ConfigDict) -> bool:
    pitch = config.get("pitch")
    return pitch is not None and pitch.enabled and pitch.get("condition_decoder", False)


class FlowDecoder(nnx.Module):
    """v(x_t, t | mu_y, speaker[, pitch]): a Matcha U-Net over concat(x_t, mu_y[, pitch], speaker
    embedding) or a DiT over concat(x_t, mu_y[, pitch]) with the speaker embedding in its adaLN
    condition. pitch: [B,T,2] (normalised log-F0, voicing) when ``pitch.condition_decoder``.
    Speaker id ``num_speakers`` is the null speaker of classifier-free guidance."""

    def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
        dec, n_mels = config.decoder, config.n_mels
        if dec.kind not in DECODERS:
            raise ValueError(f"unknown decoder kind {dec.kind!r}; choose one of {DECODERS}")
        self.kind = dec.kind
        self.reads_pitch = _decoder_reads_pitch(config)
        d_in = 2 * n_mels + (PITCH_CHANNELS if self.reads_pitch else 0)
        self.speaker = nnx.Embed(config.num_speakers + 1, dec.speaker_dim, rngs=rngs)
        if dec.kind == "unet":
            self.net = UNet1D(d_in + dec.speaker_dim, n_mels, rngs=rngs, **dict(dec.unet))
        else:
            self.net = DiT(d_in, n_mels, dec.speaker_dim, rngs=rngs, **dict(dec.dit))

    def __call__(self, x_t, t, mu, speaker, mask, pitch=None, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        if self.reads_pitch != (pitch is not None):
            raise ValueError("the decoder was built with pitch.condition_decoder="
                             f"{self.reads_pitch}: cond['pitch'] [B,T,2] must be "
                             f"{'given' if self.reads_pitch else 'absent'}")
        spk = self.speaker(speaker)
        x = jnp.concatenate([x_t, mu] + ([pitch.astype(x_t.dtype)] if pitch is not None else []), axis=-1)
        if self.kind == "unet":
            x = jnp.concatenate([x, jnp.broadcast_to(spk[:, None, :], (*x.shape[:2], spk.shape[-1]))], axis=-1)
            return self.net(x, t, mask, rngs=rngs)
        return self.net(x, t, spk, mask, rngs=rngs)


class FlowMatchingTTS(nnx.Module):
    """Text encoder, duration predictor, intonation encoder/predictor and flow decoder."""

    def __init__(self, config: Mapping[str, Any], *, rngs: nnx.Rngs):
        config = _as_config(config)
        enc, dp, into = config.encoder, config.duration_predictor, config.intonation
        if config.num_speakers < 1:
            raise ValueError(f"num_speakers must be >= 1, got {config.num_speakers}")
        if not 0 <= config.break_token < config.vocab_size:
            raise ValueError(f"break_token {config.break_token} outside the vocabulary [0, {config.vocab_size})")
        if not config.mel_std > 0:
            raise ValueError(f"mel_std must be > 0, got {config.mel_std}")
        d = enc.d_model
        self.d_model = d
        self.num_speakers = config.num_speakers
        self.vocab_size = config.vocab_size
        self.num_intonation_tokens = into.num_tokens
        self.embed = nnx.Embed(config.vocab_size, d, rngs=rngs)
        self.speaker = nnx.Embed(config.num_speakers, d, rngs=rngs)
        self.prenet = ConvStack(d, d, enc.prenet_layers, enc.prenet_kernel, enc.dropout, rngs=rngs)
        # Matcha's ConvReluNorm: x + proj(convs(x)), proj zero-initialised (starts as the identity).
        self.prenet_proj = nnx.Linear(d, d, kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.transformer = Transformer(d, enc.num_layers, enc.num_heads, ff_mult=enc.ff_mult, dropout=enc.dropout,
                                       rngs=rngs)
        self.mean_proj = nnx.Linear(d, config.n_mels, rngs=rngs)
        self.duration_body = ConvStack(d, dp.channels, 2, dp.kernel, dp.dropout, rngs=rngs)
        self.duration_proj = nnx.Linear(dp.channels, 1, rngs=rngs)
        self.intonation = TerminalIntonationEncoder(
            d, num_tokens=into.num_tokens, lstm_hidden=into.lstm_hidden, attention_dim=into.attention_dim,
            num_heads=into.num_heads, rngs=rngs,
            contour_points=into.contour_points if into.get("reconstruction_weight", 0.0) > 0 else None)
        self.intonation_predictor = IntonationPredictor(d, enc.num_heads, into.num_tokens, into.num_heads,
                                                        enc.ff_mult, enc.dropout, rngs=rngs)
        self.decoder = FlowDecoder(config, rngs=rngs)
        pitch = config.get("pitch")
        enabled = pitch is not None and pitch.enabled
        self.pitch = (PitchPredictor(d, pitch.channels, pitch.layers, pitch.kernel, pitch.dropout, rngs=rngs)
                      if enabled else None)

    def encode(
        self,
        tokens: jax.Array,
        token_mask: jax.Array,
        speaker: jax.Array,
        boundaries: Mapping[str, jax.Array] | None = None,
        *,
        contour: jax.Array | None = None,
        intonation: jax.Array | None = None,
        rngs: nnx.Rngs | None = None,
    ) -> dict[str, jax.Array]:
        """Text side. Returns mu [B,L,F] (normalised-mel units), log_durations [B,L], the encoder
        output hidden [B,L,D],
        and with boundaries intonation_logits [B,N,H,K] and intonation_weights [B,N,H,K]
        (and intonation_contour [B,N,C], the style decoded back, when the model has that head).

        Token weights come from the reference ``contour`` [B,N,C] (training), else from
        ``intonation`` [B,N] int token choices, else from the predictor's per-head softmax.
        """
        chex.assert_rank([tokens, token_mask, speaker], [2, 2, 1])
        chex.assert_equal_shape([tokens, token_mask])
        chex.assert_equal_shape_prefix([tokens, speaker], 1)
        mask = token_mask.astype(bool)
        x = self.embed(jnp.where(mask, tokens, 0)) * math.sqrt(self.d_model) + self.speaker(speaker)[:, None, :]
        x = _masked(x, mask)
        text_states = _masked(x + self.prenet_proj(self.prenet(x, mask, rngs)), mask)
        out: dict[str, jax.Array] = {}
        if boundaries is None and (contour is not None or intonation is not None):
            raise ValueError("a boundary contour or intonation choice needs the boundary word spans and mask")
        if boundaries is not None:
            start, end = boundaries["boundary_word_start"], boundaries["boundary_word_end"]
            present = boundaries["boundary_mask"].astype(bool)
            chex.assert_rank([start, end, present], 2)
            chex.assert_equal_shape([start, end, present])
            # The predictor must not shape the encoder: it reads detached states.
            logits = self.intonation_predictor(jax.lax.stop_gradient(text_states), mask, start, end, present, rngs)
            if contour is not None:
                chex.assert_rank(contour, 3)
                chex.assert_equal_shape_prefix([contour, present], 2)
                weights = self.intonation.weights(jnp.where(present[..., None], contour, 0.0))
            elif intonation is not None:
                chex.assert_equal_shape([intonation, present])
                one_hot = jax.nn.one_hot(intonation, self.num_intonation_tokens)
                weights = jnp.broadcast_to(one_hot[:, :, None, :], logits.shape)
            else:
                weights = jax.nn.softmax(logits, axis=-1)
            style = self.intonation.style(weights)  # [B,N,D]
            positions = jnp.arange(tokens.shape[1])
            span = (positions >= start[..., None]) & (positions < end[..., None]) & present[..., None]
            text_states = text_states + jnp.einsum("bnl,bnd->bld", span.astype(style.dtype), style)
            out.update(intonation_logits=logits, intonation_weights=weights)
            if self.intonation.contour_head is not None:
                out["intonation_contour"] = self.intonation.reconstruct(style)
        hidden = self.transformer(text_states, mask, rngs=rngs)
        out["mu"] = _masked(self.mean_proj(hidden), mask)
        out["hidden"] = hidden
        # Matcha trains the duration predictor on the detached encoder output.
        body = self.duration_body(jax.lax.stop_gradient(hidden), mask, rngs)
        out["log_durations"] = jnp.where(mask, self.duration_proj(body)[..., 0], 0.0)
        return out


def init(config: Mapping[str, Any], key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Builds a FlowMatchingTTS and splits it into (graphdef, params)."""
    return nnx.split(FlowMatchingTTS(config, rngs=nnx.Rngs(params=key)), nnx.Param)


def _boundaries(batch: Mapping[str, Any]) -> dict[str, jax.Array] | None:
    given = [name for name in BOUNDARY_KEYS if batch.get(name) is not None]
    if not given:
        return None
    if len(given) != len(BOUNDARY_KEYS):
        raise ValueError(f"boundary inputs come together: got {given}, need all of {list(BOUNDARY_KEYS)}")
    return {name: batch[name] for name in BOUNDARY_KEYS}


def encode(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    tokens: jax.Array,
    token_mask: jax.Array,
    speaker: jax.Array,
    boundaries: Mapping[str, jax.Array] | None = None,
    *,
    contour: jax.Array | None = None,
    intonation: jax.Array | None = None,
    key: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Pure text-side pass (see ``FlowMatchingTTS.encode``). key: dropout key, None = deterministic."""
    rngs = None if key is None else nnx.Rngs(dropout=key)
    model = nnx.merge(graphdef, params)
    return model.encode(tokens, token_mask, speaker, boundaries, contour=contour, intonation=intonation, rngs=rngs)


def vector_field(
    graphdef: nnx.GraphDef, params: nnx.State, *, key: jax.Array | None = None
) -> Callable[[jax.Array, jax.Array, Mapping[str, jax.Array]], jax.Array]:
    """The decoder as ``v(x_t [B,T,F], t [B], cond) -> [B,T,F]`` for losses and samplers.

    cond: {"mu": [B,T,F] frame-level text means, "speaker": [B] int (num_speakers = null),
    "mask": [B,T] bool, and with pitch.condition_decoder "pitch": [B,T,2] from
    :func:`pitch_condition`}. key: dropout key, None = deterministic.
    """
    decoder = nnx.merge(graphdef, params).decoder
    rngs = None if key is None else nnx.Rngs(dropout=key)

    def field(x_t, t, cond):
        return decoder(x_t, t, cond["mu"], cond["speaker"], cond["mask"], cond.get("pitch"), rngs=rngs)

    return field


def pitch_condition(log_f0: jax.Array, voicing: jax.Array, mask: jax.Array) -> jax.Array:
    """The decoder's pitch input [B,T,2]: normalised log-F0 [B,T] ((ln F0 - pitch.log_f0_mean) /
    pitch.log_f0_std) and voicing [B,T] (0/1, or a probability), zero where ``mask`` is False."""
    chex.assert_equal_shape([log_f0, voicing, mask])
    return jnp.where(mask[..., None], jnp.stack([log_f0, voicing], axis=-1).astype(jnp.float32), 0.0)


def null_condition(config: Mapping[str, Any], mask: jax.Array) -> dict[str, jax.Array]:
    """The CFG null condition for ``mask`` [B,T]: zero mu_y (and zero pitch when the decoder reads
    it) and the null speaker (broadcastable leaves)."""
    config = _as_config(config)
    null = {"mu": jnp.zeros((1, 1, config.n_mels)), "speaker": jnp.full((1,), config.num_speakers, jnp.int32),
            "mask": mask}
    if _decoder_reads_pitch(config):
        null["pitch"] = jnp.zeros((1, 1, PITCH_CHANNELS))
    return null


def align(mu: jax.Array, mel: jax.Array, token_mask: jax.Array, mel_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """MAS of normalised mel frames [B,T,F] to text means [B,L,F] under a unit Gaussian.

    Returns (path [B,L,T] 0/1 float32, durations [B,L] int32); no gradient flows through either.
    """
    path = monotonic_alignment(gaussian_log_likelihood(jax.lax.stop_gradient(mu), mel), token_mask, mel_mask)
    return path, durations_from_path(path)


def _random_segment(key, arrays, mel_mask, frames: int):
    """The same random window of ``frames`` frames from each row of every [B,T,...] array (Matcha
    out_size): start ~ U{0..max(len - frames, 0)}."""
    lengths = jnp.sum(mel_mask, axis=1)
    starts = jax.random.randint(key, lengths.shape, 0, jnp.maximum(lengths - frames, 0) + 1)
    cut = jax.vmap(lambda a, s: jax.lax.dynamic_slice_in_dim(a, s, frames, axis=0))
    return [cut(a, starts) for a in arrays]


def _pitch_targets(pitch: ml_collections.ConfigDict, batch: Batch,
                   mel_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The recording's normalised log-F0 [B,T] float32 and voicing [B,T] bool (False on padding)."""
    for name in ("log_f0", "voiced"):
        if name not in batch:
            raise KeyError(f"model.pitch.enabled needs batch[{name!r}] [B,T]; batch has {sorted(batch)}")
    chex.assert_equal_shape([batch["log_f0"], batch["voiced"], mel_mask])
    target = (batch["log_f0"].astype(jnp.float32) - pitch.log_f0_mean) / pitch.log_f0_std
    return target, batch["voiced"].astype(bool) & mel_mask


def _pitch_terms(model: FlowMatchingTTS, pitch: ml_collections.ConfigDict, hidden: jax.Array, path: jax.Array,
                 durations: jax.Array, batch: Batch, mel_mask: jax.Array,
                 rngs: nnx.Rngs | None) -> dict[str, jax.Array]:
    """Pitch predictor terms on the MAS-expanded states: pitch_mse (normalised log-F0, frames of
    utterances with some voicing), voicing_bce and voicing_accuracy (all valid frames)."""
    frames = jnp.einsum("blt,blc->btc", path, _pitch_inputs(hidden, durations))
    prediction = model.pitch(frames, mel_mask, rngs)
    target, voiced = _pitch_targets(pitch, batch, mel_mask)
    pitched = mel_mask & jnp.any(voiced, axis=1, keepdims=True)  # utterances with no voicing have no F0
    frames_count = jnp.maximum(jnp.sum(mel_mask), 1)
    bce = optax.sigmoid_binary_cross_entropy(prediction[..., 1], voiced.astype(jnp.float32))
    return {
        "pitch_mse": jnp.sum(jnp.where(pitched, jnp.square(prediction[..., 0] - target), 0.0))
        / jnp.maximum(jnp.sum(pitched), 1),
        "voicing_bce": jnp.sum(jnp.where(mel_mask, bce, 0.0)) / frames_count,
        "voicing_accuracy": jnp.sum(mel_mask & ((prediction[..., 1] > 0) == voiced)) / frames_count,
    }


def make_loss_fn(
    graphdef: nnx.GraphDef, config: Mapping[str, Any], *, train: bool = True
) -> Callable[[nnx.State, Batch, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]:
    """loss_fn(params, batch, key) -> (loss, metrics) for the batch contract in the module docstring.

    loss = duration + prior + flow (Matcha, unit weights) + intonation cross-entropy
    (+ pitch_mse + voicing_bce with pitch.enabled, see :func:`_pitch_terms`)
    (+ intonation.reconstruction_weight x intonation_reconstruction: sum over present boundaries of
    |decoded - reference contour|^2 over the sum of |reference contour|^2, so 1 is no better than a
    flat contour). train=True applies dropout and the CFG condition dropout; train=False is
    deterministic but still draws the flow time and noise from ``key``. Metrics: loss,
    duration_loss, prior_loss, flow_mse, intonation_ce, intonation_accuracy, break_frames (mean MAS
    frames per break token), and intonation_reconstruction when enabled.
    """
    config = _as_config(config)
    flow = config.flow
    if not 0.0 <= flow.cond_drop_prob < 1.0:
        raise ValueError(f"flow.cond_drop_prob must be in [0, 1), got {flow.cond_drop_prob}")
    segment = flow.segment_frames
    if segment is not None and segment < 1:
        raise ValueError(f"flow.segment_frames must be >= 1 or None, got {segment}")
    mel_mean, mel_std = config.mel_mean, config.mel_std
    reconstruction_weight = config.intonation.get("reconstruction_weight", 0.0)
    reads_pitch = _decoder_reads_pitch(config)

    def loss_fn(params: nnx.State, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        for name in ("tokens", "token_mask", "speaker", "mel", "mel_mask"):
            if name not in batch:
                raise KeyError(f"TTS loss needs batch[{name!r}]; batch has {sorted(batch)}")
        tokens, token_mask, speaker = batch["tokens"], batch["token_mask"].astype(bool), batch["speaker"]
        mel_mask = batch["mel_mask"].astype(bool)
        chex.assert_rank(batch["mel"], 3)
        chex.assert_equal_shape_prefix([batch["mel"], mel_mask], 2)
        mel = _masked((batch["mel"].astype(jnp.float32) - mel_mean) / mel_std, mel_mask)
        k_dropout, k_cond, k_segment, k_flow = jax.random.split(key, 4)
        boundaries = _boundaries(batch)
        contour = batch.get("boundary_contour") if boundaries is not None else None
        if boundaries is not None and contour is None:
            raise KeyError("training with boundaries needs batch['boundary_contour'] [B,N,C]")
        model = nnx.merge(graphdef, params)
        rngs = nnx.Rngs(dropout=k_dropout) if train else None
        enc = model.encode(tokens, token_mask, speaker, boundaries, contour=contour, rngs=rngs)
        mu = enc["mu"]

        path, durations = align(mu, mel, token_mask, mel_mask)
        dur = duration_loss(enc["log_durations"], durations, token_mask)
        mu_frames = jnp.einsum("blt,blf->btf", path, mu)  # gradient reaches mu through the product
        prior = prior_loss(mel, mu_frames, mel_mask)

        cond = {"mu": mu_frames, "speaker": speaker, "mask": mel_mask}
        if reads_pitch:  # teacher forcing: the recording's pitch
            log_f0, voiced = _pitch_targets(config.pitch, batch, mel_mask)
            cond["pitch"] = pitch_condition(log_f0, voiced.astype(jnp.float32), mel_mask)
        if train and flow.cond_drop_prob > 0:
            drop = jax.random.uniform(k_cond, speaker.shape) < flow.cond_drop_prob
            null = null_condition(config, mel_mask)
            cond = {name: value if name == "mask" else
                    jnp.where(drop.reshape(-1, *([1] * (value.ndim - 1))), null[name], value)
                    for name, value in cond.items()}
        target = mel
        if segment is not None and segment < mel.shape[1]:
            names = [name for name in cond if name != "speaker"]
            target, *cut = _random_segment(k_segment, [mel] + [cond[name] for name in names], mel_mask, segment)
            cond.update(zip(names, cut))
        field = vector_field(graphdef, params, key=k_dropout if train else None)
        flow_loss, flow_metrics = conditional_flow_matching(
            field, {"mel": target, "mel_mask": cond["mask"], "cond": cond}, k_flow, sigma_min=flow.sigma_min)

        if boundaries is not None:
            present = boundaries["boundary_mask"].astype(bool)
            # Target: the reference encoder's per-head token weights, detached (soft cross-entropy,
            # averaged over heads); accuracy compares the head-averaged argmax tokens.
            target = jax.lax.stop_gradient(enc["intonation_weights"])
            log_probs = jax.nn.log_softmax(enc["intonation_logits"], axis=-1)
            nll = -jnp.sum(target * log_probs, axis=-1).mean(axis=-1)
            count = jnp.maximum(jnp.sum(present), 1)
            intonation_ce = jnp.sum(jnp.where(present, nll, 0.0)) / count
            hits = jnp.argmax(log_probs.mean(axis=2), axis=-1) == jnp.argmax(target.mean(axis=2), axis=-1)
            intonation_accuracy = jnp.sum(present & hits) / count
        else:
            intonation_ce = intonation_accuracy = jnp.zeros((), jnp.float32)
        extra = {}
        if reconstruction_weight > 0 and boundaries is not None:
            error = jnp.sum(jnp.square(enc["intonation_contour"] - contour), axis=-1)  # [B,N]
            energy = jnp.sum(jnp.where(present, jnp.sum(jnp.square(contour), axis=-1), 0.0))
            extra["intonation_reconstruction"] = jnp.sum(jnp.where(present, error, 0.0)) / jnp.maximum(energy, 1e-6)

        if model.pitch is not None:
            extra.update(_pitch_terms(model, config.pitch, enc["hidden"], path, durations, batch, mel_mask, rngs))

        is_break = token_mask & (tokens == config.break_token)
        break_frames = jnp.sum(jnp.where(is_break, durations, 0)) / jnp.maximum(jnp.sum(is_break), 1)
        loss = dur + prior + flow_loss + intonation_ce
        if "intonation_reconstruction" in extra:
            loss = loss + reconstruction_weight * extra["intonation_reconstruction"]
        if "pitch_mse" in extra:
            loss = loss + extra["pitch_mse"] + extra["voicing_bce"]
        metrics = {
            "loss": loss,
            "duration_loss": dur,
            "prior_loss": prior,
            "flow_mse": flow_metrics["flow_mse"],
            "intonation_ce": intonation_ce,
            "intonation_accuracy": intonation_accuracy,
            "break_frames": break_frames.astype(jnp.float32),
            **extra,
        }
        return loss, metrics

    return loss_fn


def _host(x) -> np.ndarray | None:
    """Concrete values of ``x`` for input checks, or None under tracing."""
    try:
        return np.asarray(x)
    except jax.errors.TracerArrayConversionError:
        return None


@functools.partial(jax.jit, static_argnums=0)
def _encode_for_synthesis(graphdef, params, tokens, token_mask, speaker, boundaries, intonation):
    enc = encode(graphdef, params, tokens, token_mask, speaker, boundaries, intonation=intonation)
    return enc["mu"], enc["log_durations"], enc["hidden"]


@functools.partial(jax.jit, static_argnames=("graphdef", "config", "max_frames", "steps", "method", "sway",
                                             "temperature"))
def _synthesise(params, mu, hidden, durations, token_mask, speaker, key, guidance_scale, *, graphdef, config,
                max_frames, steps, method, sway, temperature):
    n_mels = config.n_mels
    mu_frames, mel_mask = length_regulate(mu, durations, token_mask, max_frames)
    cond = {"mu": mu_frames, "speaker": speaker, "mask": mel_mask}
    f0 = voiced = None
    pitch_predictor = nnx.merge(graphdef, params).pitch
    if pitch_predictor is not None:
        frames, _ = length_regulate(_pitch_inputs(hidden, durations), durations, token_mask, max_frames)
        prediction = pitch_predictor(frames, mel_mask, None)
        f0 = jnp.where(mel_mask, jnp.exp(prediction[..., 0] * config.pitch.log_f0_std + config.pitch.log_f0_mean), 0.0)
        voiced = jnp.where(mel_mask, jax.nn.sigmoid(prediction[..., 1]), 0.0)
        if _decoder_reads_pitch(config):
            cond["pitch"] = pitch_condition(prediction[..., 0], voiced, mel_mask)
    uncond = None if guidance_scale is None else null_condition(config, mel_mask)
    x = sample_ode(vector_field(graphdef, params), key, (mu.shape[0], max_frames, n_mels), cond=cond, steps=steps,
                   method=method, uncond=uncond, guidance_scale=guidance_scale, sway=sway, temperature=temperature)
    return x, mel_mask, f0, voiced


class Synthesis(NamedTuple):
    """What :func:`generate` returns. mel: [B,T,n_mels] log-mel in the data's units, zero on
    padding; mel_mask: [B,T] bool; f0: [B,T] Hz and voiced: [B,T] voicing probability from the
    pitch predictor (zero on padding; voiced frames are those above 1/2), None without one."""

    mel: jax.Array
    mel_mask: jax.Array
    f0: jax.Array | None
    voiced: jax.Array | None


def generate(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    config: Mapping[str, Any],
    tokens: jax.Array,
    token_mask: jax.Array,
    speaker: jax.Array,
    key: jax.Array,
    *,
    steps: int = 10,
    method: str = "euler",
    guidance_scale: float | None = None,
    temperature: float = 0.667,
    length_scale: float = 1.0,
    duration_rounding: str = "ceil",
    sway: bool | float = False,
    intonation: jax.Array | None = None,
    boundary_word_start: jax.Array | None = None,
    boundary_word_end: jax.Array | None = None,
    boundary_mask: jax.Array | None = None,
    max_frames: int | None = None,
) -> Synthesis:
    """Synthesise log-mels: durations -> length regulation -> ODE from noise (Matcha: 10 Euler
    steps, temperature 0.667), and with a pitch predictor the frame-level F0 and voicing.
    Returns a :class:`Synthesis`; mel_mask has ceil(sum of durations) valid frames per row.

    guidance_scale: classifier-free guidance against the null speaker and zero mu_y (needs
    training with flow.cond_drop_prob > 0); None = off. duration_rounding: "ceil" (Matcha) or
    "round" (``nn.length_regulator.durations_from_log``). intonation: [B,N] token index per
    boundary (with the three boundary arrays), overriding the text-predicted intonation.
    max_frames: static output length; None = the longest row rounded up to a multiple of
    FRAME_BUCKET (needs concrete inputs).
    """
    config = _as_config(config)
    chex.assert_rank([tokens, token_mask, speaker], [2, 2, 1])
    boundaries = _boundaries(dict(boundary_word_start=boundary_word_start, boundary_word_end=boundary_word_end,
                                  boundary_mask=boundary_mask))
    if intonation is not None and boundaries is None:
        raise ValueError("intonation choices need boundary_word_start, boundary_word_end and boundary_mask")
    if guidance_scale is not None and not (math.isfinite(guidance_scale) and guidance_scale >= 0):
        raise ValueError(f"guidance_scale must be finite and >= 0, got {guidance_scale}")
    mask_np, tokens_np, speaker_np = _host(token_mask), _host(tokens), _host(speaker)
    if mask_np is not None and not np.all(mask_np.astype(bool).any(axis=1)):
        raise ValueError(f"empty text: rows {np.nonzero(~mask_np.astype(bool).any(axis=1))[0].tolist()} have no tokens")
    if tokens_np is not None and mask_np is not None:
        valid = tokens_np[mask_np.astype(bool)]
        if valid.size and (valid.min() < 0 or valid.max() >= config.vocab_size):
            raise ValueError(f"token ids must be in [0, {config.vocab_size}), got {valid.min()}..{valid.max()}")
    if speaker_np is not None and (speaker_np.min() < 0 or speaker_np.max() >= config.num_speakers):
        raise ValueError(f"unknown speaker: ids must be in [0, {config.num_speakers}), got {speaker_np.tolist()}")
    if intonation is not None:
        choice = _host(intonation)
        k = config.intonation.num_tokens
        if choice is not None and (choice.min(initial=0) < 0 or choice.max(initial=0) >= k):
            raise ValueError(f"intonation tokens must be in [0, {k}), got {choice.tolist()}")
        intonation = jnp.asarray(intonation, jnp.int32)

    token_mask = jnp.asarray(token_mask, bool)
    mu, log_durations, hidden = _encode_for_synthesis(graphdef, params, tokens, token_mask, speaker, boundaries,
                                                      intonation)
    durations = durations_from_log(log_durations, token_mask, length_scale=length_scale, rounding=duration_rounding)
    frames = _host(durations)
    if frames is None and max_frames is None:
        raise ValueError("under jit, generate needs a static max_frames")
    if frames is not None:
        needed = int(np.ceil(frames.sum(axis=1).max()))
        if max_frames is None:
            max_frames = max(FRAME_BUCKET, -(-needed // FRAME_BUCKET) * FRAME_BUCKET)
        elif needed > max_frames:
            raise ValueError(f"predicted durations need {needed} frames but max_frames is {max_frames}")
    x, mel_mask, f0, voiced = _synthesise(
        params, mu, hidden, durations, token_mask, speaker, key,
        None if guidance_scale is None else jnp.float32(guidance_scale),
        graphdef=graphdef, config=ml_collections.FrozenConfigDict(config), max_frames=max_frames, steps=steps,
        method=method, sway=sway, temperature=float(temperature))
    return Synthesis(_masked(x * config.mel_std + config.mel_mean, mel_mask), mel_mask, f0, voiced)
