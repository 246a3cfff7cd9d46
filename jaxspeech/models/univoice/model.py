"""UniVoice (2025): one decoder-only LLM for autoregressive ASR and flow-matching TTS.

ASR rows: audio features -> audio encoder -> adapter (average pooling, LayerNorm, Linear) give speech
embeddings that prefix the text (task prompt, then transcript); the LLM predicts the transcript
tokens. TTS rows: text (reference + target) -> a timestep token (the flow time's embedding through
an MLP) -> one embedding per mel frame, ``Linear([x_t, condition])`` plus sinusoidal frame
positions; the LLM's states on the frames go through LayerNorm, adaLN from the flow time and a
Linear to the velocity. Every row is laid out by ``layout.row_layout`` and attends under the dual
mask (causal, frames bidirectional), so one forward pass serves a batch that mixes both tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxspeech.models.llm.model import Llama
from jaxspeech.models.univoice.config import UniVoiceConfig
from jaxspeech.models.univoice.layout import Packing, RowLayout, assemble, packed_rows, row_layout
from jaxspeech.models.whisper.model import WhisperEncoder
from jaxspeech.nn.conformer import ConformerEncoder
from jaxspeech.nn.depthwise_conv import ConvNeXtBlock
from jaxspeech.nn.dit import modulate
from jaxspeech.nn.subsampling import ConvSubsampling, subsampled_length
from jaxspeech.nn.timestep import TimestepEmbedding, sinusoidal_embedding


class Rows(NamedTuple):
    """A batch of ASR and TTS rows (a row is one or the other; lengths of the other task's parts are 0).

    text: [B, L] int token ids, text_lengths: [B] (ASR: task prompt + transcript; TTS: reference +
      target text, 0 when dropped for classifier-free guidance).
    features: [B, Tf, n_mels] ASR audio features or None (no ASR rows), feature_lengths: [B].
    x_t: [B, T, n_mels] noisy frames or None (no TTS rows), cond: [B, T, n_mels] condition frames
      (the known frames, zero where infilled), frame_lengths: [B] (0 for ASR rows).
    t: [B] flow time in [0, 1] (read by TTS rows only).
    packing: None (each row is one LLM sequence) or where each row sits in fewer, longer packed rows
      (``layout.Packing``; ``data.packing`` plans it): the outputs are the same, the LLM runs on less padding.
    """

    text: jax.Array
    text_lengths: jax.Array
    features: jax.Array | None
    feature_lengths: jax.Array
    x_t: jax.Array | None
    cond: jax.Array | None
    frame_lengths: jax.Array
    t: jax.Array
    packing: Packing | None = None


class EncoderLogits(NamedTuple):
    """The audio encoder's per-frame token logits (``SpeechLM.encoder_token_logits``), for a CTC loss.

    logits: [B, Te, V] float32 over the LLM's vocabulary; mask: [B, Te] bool, the encoder frames of
    each row's audio (none for rows without audio)."""

    logits: jax.Array
    mask: jax.Array


class Outputs(NamedTuple):
    """text_logits: [B, L, V] float32 at the text positions (position i predicts text token i + 1);
    velocity: [B, T, n_mels] at the frames (None without TTS rows); layout: the rows' RowLayout;
    encoder: the encoder's token logits when asked for (``encoder_logits=True``), else None."""

    text_logits: jax.Array
    velocity: jax.Array | None
    layout: RowLayout
    encoder: EncoderLogits | None = None


def _ceil_div(x, divisor: int):
    return -(-x // divisor)


def speech_length(config: UniVoiceConfig, feature_frames):
    """Speech embeddings from ``feature_frames`` audio frames (int or int array): 4x conv subsampling
    (Whisper: its stride-2 convolution over the whole window), then ceil(/pool)."""
    encoder_frames = _ceil_div(feature_frames, 2) if config.whisper is not None else subsampled_length(feature_frames)
    return _ceil_div(encoder_frames, config.pool)


def row_tokens(config: UniVoiceConfig, *, text, frames, tts, feature_frames) -> np.ndarray:
    """Host side, for packing: the LLM tokens [B] of rows with ``text`` [B] tokens, ``frames`` [B] mel
    frames, ``tts`` [B] bool and ``feature_frames`` [B] (the audio encoder's input frames of an ASR row;
    0: an empty row), as UniVoice (speech + text, or text + time token + frames) or Flow-Omni (no time
    token) lays them out. CFG text dropout, drawn later, only shortens a row."""
    text, frames, feature_frames = (np.asarray(x, np.int64) for x in (text, frames, feature_frames))
    speech = np.where(feature_frames > 0, speech_length(config, feature_frames), 0)
    time_token = int(config.tts_head != "flow_omni")
    return np.where(tts, text + time_token + frames, np.where(text > 0, speech + text, 0)).astype(np.int32)


def sequence_length(config: UniVoiceConfig, *, speech: int, text: int, frames: int) -> int:
    """The sequence length S of unpacked rows whose speech, text and frame sources hold these many
    elements (frames 0: no TTS rows): the longest row either task lays out."""
    if config.tts_head == "flow_omni":
        return max(speech, frames) + text
    return max(speech + text, text + 1 + frames if frames else text)


def batch_row_tokens(config: UniVoiceConfig, batch: Mapping[str, np.ndarray]) -> np.ndarray:
    """``row_tokens`` of a collated UniVoice batch (``univoice.loss``'s keys)."""
    frames = np.sum(batch["mel_mask"], axis=1)
    feature_frames = batch["asr_feature_lengths"] if "asr_features" in batch else frames
    return row_tokens(config, text=np.sum(batch["token_mask"], axis=1), frames=frames,
                      tts=np.asarray(batch["tts"], bool), feature_frames=feature_frames)  # fmt: skip


class SpeechAdapter(nnx.Module):
    """Average pooling over ``pool`` frames (padding excluded) -> LayerNorm -> Linear to the LLM width.
    __call__(x [B,T,De], mask [B,T]) -> (y [B,ceil(T/pool),D], mask)."""

    def __init__(self, d_in: int, d_out: int, pool: int, *, rngs: nnx.Rngs):
        self.pool = pool
        self.norm = nnx.LayerNorm(d_in, rngs=rngs)
        self.proj = nnx.Linear(d_in, d_out, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        batch, frames, dim = x.shape
        pooled_frames = _ceil_div(frames, self.pool)
        pad = pooled_frames * self.pool - frames
        x = jnp.pad(jnp.where(mask[..., None], x, 0.0), ((0, 0), (0, pad), (0, 0)))
        weights = jnp.pad(mask, ((0, 0), (0, pad))).reshape(batch, pooled_frames, self.pool)
        summed = x.reshape(batch, pooled_frames, self.pool, dim).sum(axis=2)
        count = weights.sum(axis=2, dtype=x.dtype)
        pooled_mask = count > 0
        pooled = summed / jnp.maximum(count, 1.0)[..., None]
        return jnp.where(pooled_mask[..., None], self.proj(self.norm(pooled)), 0.0), pooled_mask


class SpeechLM(nnx.Module):
    """The LLM and the ASR front end (audio encoder + adapter) that UniVoice and Flow-Omni share."""

    def __init__(self, config: UniVoiceConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.llm = Llama(config.llm, rngs=rngs)
        if config.whisper is not None:
            self.audio_encoder = WhisperEncoder(config.whisper, rngs=rngs)
        else:
            self.input_norm = nnx.LayerNorm(config.n_mels, rngs=rngs)
            self.subsampling = ConvSubsampling(config.n_mels, config.encoder_dim,
                                               channels=config.encoder_subsampling_channels, rngs=rngs)  # fmt: skip
            self.audio_encoder = ConformerEncoder(
                config.encoder_dim, config.encoder_layers, config.encoder_heads, ff_mult=config.encoder_ff_mult,
                conv_kernel=config.encoder_conv_kernel, dropout=config.encoder_dropout, rngs=rngs,
            )  # fmt: skip
        self.adapter = SpeechAdapter(config.encoder_width, config.llm.hidden_size, config.pool, rngs=rngs)
        width, upsample = config.encoder_width, config.ctc_upsample
        self.ctc_upsampler = nnx.Linear(width, width * upsample, rngs=rngs) if upsample > 1 else None

    @property
    def dtype(self):
        return self.llm.embed_tokens.embedding.dtype

    def encode(self, features: jax.Array, lengths: jax.Array,
               rngs: nnx.Rngs | None = None) -> tuple[jax.Array, jax.Array]:
        """features [B, Tf, mels], lengths [B] -> the audio encoder's (states [B, Te, De], mask [B, Te]).
        Whisper reads its whole window (its padding is the log-mel of silence, as Whisper was trained):
        a row's length only says whether it has audio."""
        chex.assert_rank(features, 3)
        mask = jnp.arange(features.shape[1])[None, :] < lengths[:, None]
        if self.config.whisper is not None:
            x, _ = self.audio_encoder(jnp.swapaxes(features, 1, 2), None, rngs)
            sub_mask = jnp.broadcast_to(lengths[:, None] > 0, x.shape[:2])
        else:
            x = jnp.where(mask[..., None], features, 0.0)  # padding never reaches a gradient
            x, sub_mask = self.subsampling(self.input_norm(x), mask)
            x = self.audio_encoder(x, sub_mask, rngs=rngs)
        if self.config.freeze_audio_encoder:
            x = jax.lax.stop_gradient(x)
        return x, sub_mask

    def speech_embeddings(self, features: jax.Array, lengths: jax.Array,
                          rngs: nnx.Rngs | None = None) -> tuple[jax.Array, jax.Array]:
        """features [B, Tf, mels], lengths [B] -> (embeddings [B, A, D], lengths [B]),
        A = speech_length(config, Tf). Rows of length 0 give no embeddings."""
        return self.adapt(*self.encode(features, lengths, rngs))

    def adapt(self, states: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Encoder states [B, Te, De] and mask [B, Te] -> (speech embeddings [B, A, D], lengths [B])."""
        embeddings, pooled_mask = self.adapter(states, mask)
        return embeddings.astype(self.dtype), pooled_mask.sum(-1, dtype=jnp.int32)

    def encoder_token_logits(self, states: jax.Array, mask: jax.Array) -> EncoderLogits:
        """Encoder states [B, Te, De] and mask [B, Te] -> logits over the LLM's vocabulary at
        U = ``ctc_upsample`` CTC frames per encoder frame ([B, U x Te, V], mask repeated): the
        upsampler's U states per frame (U > 1), the adapter's LayerNorm and Linear without the pooling, then
        the LLM's output head (joint CTC-attention training reads them, Kim et al. 2017)."""
        if self.ctc_upsampler is not None:
            batch, frames, width = states.shape
            upsample = self.config.ctc_upsample
            states = self.ctc_upsampler(states).reshape(batch, frames * upsample, width)
            mask = jnp.repeat(mask, upsample, axis=1)
        projected = self.adapter.proj(self.adapter.norm(states)).astype(self.dtype)
        return EncoderLogits(self.llm.logits(projected), mask)

    def speech_segment(self, rows: Rows, rngs: nnx.Rngs | None,
                       encoder_logits: bool = False) -> tuple[jax.Array, jax.Array, EncoderLogits | None]:
        """The speech segment's source [B, A, D], lengths [B] (empty without features) and, when asked
        for (``encoder_logits``) and there are features, the encoder's token logits."""
        batch = rows.text.shape[0]
        if rows.features is None:
            empty = jnp.zeros((batch, 0, self.config.llm.hidden_size), self.dtype), jnp.zeros((batch,), jnp.int32)
            return *empty, None
        states, mask = self.encode(rows.features, rows.feature_lengths, rngs)
        logits = self.encoder_token_logits(states, mask) if encoder_logits else None
        return *self.adapt(states, mask), logits

    def run(self, layout: RowLayout, pieces: tuple[jax.Array, ...], *, dual: bool, packing: Packing | None,
            rngs: nnx.Rngs | None) -> tuple[jax.Array, jax.Array]:
        """(final-normed LLM states [B, S, D], text logits [B, L, V]) of the rows ``layout`` assembles,
        under their dual masks (``dual``) or causal masks, run as they are or packed by ``packing``."""
        sequence = assemble(layout, pieces)
        if packing is None:
            mask = layout.mask() if dual else layout.causal_mask()
            hidden, _ = self.llm.hidden_states(sequence, mask=mask, rngs=rngs)
        else:
            packed = packed_rows(layout, packing)
            hidden, _ = self.llm.hidden_states(packed.pack(sequence), mask=packed.mask(dual=dual),
                                               positions=packed.positions, rngs=rngs)  # fmt: skip
            hidden = packed.unpack(hidden)
        return hidden, self.llm.logits(layout.gather(hidden, "text"))


class UniVoice(SpeechLM):
    """UniVoice: the shared LLM and ASR front end, with flow matching on the frames inside the LLM."""

    def __init__(self, config: UniVoiceConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        width, n_mels = config.llm.hidden_size, config.n_mels
        self.frame_in = nnx.Linear(2 * n_mels, width, rngs=rngs)
        self.time_embed = TimestepEmbedding(config.time_sinusoid_dim, width, rngs=rngs)
        self.time_token_hidden = nnx.Linear(width, width, rngs=rngs)
        self.time_token_out = nnx.Linear(width, width, rngs=rngs)
        zeros = nnx.initializers.zeros
        # adaLN-zero output: the untrained head is LayerNorm -> Linear, and the velocity starts at 0.
        self.out_modulation = nnx.Linear(width, 2 * width, kernel_init=zeros, bias_init=zeros, rngs=rngs)
        self.out = nnx.Linear(width, n_mels, kernel_init=zeros, bias_init=zeros, rngs=rngs)
        self.frame_text = nnx.Embed(config.llm.vocab_size, width, rngs=rngs) if config.frame_text else None
        self.frame_text_blocks = nnx.List([ConvNeXtBlock(width, 2 * width, 7, 0.1, rngs=rngs)
                                           for _ in range(config.frame_text_blocks)])

    def frame_embeddings(self, x_t: jax.Array, cond: jax.Array) -> jax.Array:
        """x_t, cond [B, T, n_mels] -> Linear([x_t, cond]) + sinusoidal frame positions, [B, T, D]."""
        chex.assert_equal_shape([x_t, cond])
        embedded = self.frame_in(jnp.concatenate([x_t, cond], axis=-1))
        positions = sinusoidal_embedding(jnp.arange(x_t.shape[1], dtype=jnp.float32), embedded.shape[-1], scale=1.0)
        return embedded + positions[None].astype(embedded.dtype)

    def frame_text_embeddings(self, text: jax.Array, text_lengths: jax.Array, frame_lengths: jax.Array,
                              frames: int) -> jax.Array:
        """[B, frames, D]: frame i of a row's N gets the ``frame_text`` embedding of its text token floor((i + 1/2)
        L / N) (L = text_lengths), refined by the ``frame_text_blocks`` over the row's frames; zero past N and in
        rows without text."""
        text_count, frame_count = text_lengths[:, None].astype(jnp.float32), frame_lengths[:, None].astype(jnp.float32)
        index = jnp.floor((jnp.arange(frames, dtype=jnp.float32)[None, :] + 0.5) * text_count
                          / jnp.maximum(frame_count, 1.0)).astype(jnp.int32)  # fmt: skip
        tokens = jnp.take_along_axis(text, jnp.clip(index, 0, text.shape[1] - 1), axis=1)
        valid = (jnp.arange(frames)[None, :] < frame_lengths[:, None]) & (text_lengths[:, None] > 0)
        x = jnp.where(valid[..., None], self.frame_text(tokens), 0.0)
        for block in self.frame_text_blocks:
            x = block(x, valid)
        return jnp.where(valid[..., None], x, 0.0)

    def time_token(self, t_embedding: jax.Array) -> jax.Array:
        """[B, D] time embedding -> the timestep token [B, 1, D]."""
        return self.time_token_out(jax.nn.gelu(self.time_token_hidden(t_embedding)))[:, None, :]

    def __call__(self, rows: Rows, *, rngs: nnx.Rngs | None = None, encoder_logits: bool = False) -> Outputs:
        speech, speech_lengths, encoder = self.speech_segment(rows, rngs, encoder_logits)
        t_embedding = self.time_embed(rows.t)
        frames = (jnp.zeros((rows.text.shape[0], 0, speech.shape[2]), self.dtype) if rows.x_t is None
                  else self.frame_embeddings(rows.x_t, rows.cond).astype(self.dtype))  # fmt: skip
        if self.frame_text is not None and rows.x_t is not None:
            frames = frames + self.frame_text_embeddings(rows.text, rows.text_lengths, rows.frame_lengths,
                                                         frames.shape[1]).astype(self.dtype)  # fmt: skip
        is_tts = (rows.frame_lengths > 0).astype(jnp.int32)
        lengths = jnp.stack([speech_lengths, rows.text_lengths, is_tts, rows.frame_lengths], axis=1)
        capacities = (speech.shape[1], rows.text.shape[1], 1, frames.shape[1])
        # A row is ASR (speech + text) or TTS (text + time + frames): the longer of the two fits any row.
        length = sequence_length(self.config, speech=capacities[0], text=capacities[1], frames=capacities[3])
        layout = row_layout(lengths, capacities, length)
        pieces = (speech, self.llm.embed(rows.text), self.time_token(t_embedding).astype(self.dtype), frames)
        hidden, text_logits = self.run(layout, pieces, dual=True, packing=rows.packing, rngs=rngs)
        velocity = None
        if rows.x_t is not None:
            shift, scale = jnp.split(self.out_modulation(jax.nn.silu(t_embedding)), 2, axis=-1)
            velocity = self.out(modulate(layout.gather(hidden, "frames"), shift, scale)).astype(jnp.float32)
        return Outputs(text_logits, velocity, layout, encoder)


def init(config: UniVoiceConfig, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """A randomly initialised UniVoice (or, with ``config.tts_head == "flow_omni"``, Flow-Omni) split into
    (graphdef, params)."""
    if config.tts_head == "flow_omni":
        from jaxspeech.models.univoice.flow_omni import (
            FlowOmni,  # it builds on this module
        )

        return nnx.split(FlowOmni(config, rngs=nnx.Rngs(params=key)), nnx.Param)
    return nnx.split(UniVoice(config, rngs=nnx.Rngs(params=key)), nnx.Param)


def apply(graphdef: nnx.GraphDef, params: nnx.State, rows: Rows, *, key: jax.Array | None = None) -> Outputs:
    """Pure forward pass over a mixed batch; key: dropout key (None: deterministic)."""
    rngs = None if key is None else nnx.Rngs(dropout=key)
    return nnx.merge(graphdef, params)(rows, rngs=rngs)
