"""Flow-Omni: the same LLM and ASR front end, but speech frames are generated one by one: the LLM's causal
state before frame k conditions a small per-frame flow-matching head (``nn.flow_head``) that draws frame
k, and a stop head on frame k's state says whether it was the last. Text tokens and frames are one stream
(``[speech | text | frames]`` per row, causal), so zero-shot cloning continues a prompt's frames after
the prompt's text and the target text.

Training (teacher forcing): the frames enter through ``Linear(frame)``; the head is trained on
``flow_repeats`` independent (t, noise) draws per frame (MAR), rectified flow on normalised log-mels;
the stop head by class-balanced binary cross-entropy. Generation: a prefill of text and prompt frames
into the KV cache, then one LLM step per frame inside ``lax.while_loop``; the head integrates its
ODE with ``head_steps`` Euler steps from noise scaled by ``temperature``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.losses.flow_matching import flow_matching_error, path_sample
from jaxspeech.models.hashed_graph import plain
from jaxspeech.models.llm.model import prefill
from jaxspeech.models.univoice.config import UniVoiceConfig
from jaxspeech.models.univoice.layout import RowLayout, assemble, row_layout
from jaxspeech.models.univoice.loss import asr_loss, asr_training_inputs, batch_packing, check_ctc
from jaxspeech.models.univoice.model import EncoderLogits, Rows, SpeechLM, sequence_length
from jaxspeech.nn.flow_head import FlowHead

Batch = Mapping[str, jax.Array]


class FlowOmniOutputs(NamedTuple):
    """text_logits [B, L, V]; states [B, T, D]: the LLM state that predicts each frame (the one before it);
    stop_logits [B, T]: "frame k is the last" from frame k's own state; layout; encoder: as ``Outputs``'s."""

    text_logits: jax.Array
    states: jax.Array | None
    stop_logits: jax.Array | None
    layout: RowLayout
    encoder: EncoderLogits | None = None


class FlowOmni(SpeechLM):
    """The shared LLM and ASR front end with Flow-Omni's frame input, per-frame flow head and stop head.

    ``__call__(rows)``: ``rows.x_t`` holds the *clean* frames (teacher forcing); ``cond`` and ``t`` are unused.
    """

    def __init__(self, config: UniVoiceConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        width = config.llm.hidden_size
        self.frame_in = nnx.Linear(config.n_mels, width, rngs=rngs)
        self.flow_head = FlowHead(config.n_mels, width, width=config.flow_head_width, blocks=config.flow_head_blocks,
                                  time_sinusoid_dim=config.time_sinusoid_dim, rngs=rngs)  # fmt: skip
        self.stop = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, rows: Rows, *, rngs: nnx.Rngs | None = None, encoder_logits: bool = False) -> FlowOmniOutputs:
        speech, speech_lengths, encoder = self.speech_segment(rows, rngs, encoder_logits)
        frames = (jnp.zeros((rows.text.shape[0], 0, speech.shape[2]), self.dtype) if rows.x_t is None
                  else self.frame_in(rows.x_t).astype(self.dtype))  # fmt: skip
        lengths = jnp.stack([speech_lengths, rows.text_lengths, jnp.zeros_like(speech_lengths), rows.frame_lengths], 1)
        capacities = (speech.shape[1], rows.text.shape[1], 0, frames.shape[1])
        length = sequence_length(self.config, speech=capacities[0], text=capacities[1], frames=capacities[3])
        layout = row_layout(lengths, capacities, length)
        time = jnp.zeros((rows.text.shape[0], 0, speech.shape[2]), self.dtype)
        hidden, text_logits = self.run(layout, (speech, self.llm.embed(rows.text), time, frames), dual=False,
                                       packing=rows.packing, rngs=rngs)  # fmt: skip
        if rows.x_t is None:
            return FlowOmniOutputs(text_logits, None, None, layout, encoder)
        states = layout.gather(hidden, "frames", shift=-1)
        stop_logits = self.stop(layout.gather(hidden, "frames"))[..., 0].astype(jnp.float32)
        return FlowOmniOutputs(text_logits, states, stop_logits, layout, encoder)


def _balanced_bce(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean binary cross-entropy over the positives plus that over the negatives (each 0 when absent)."""
    losses = jnp.where(labels, jax.nn.softplus(-logits), jax.nn.softplus(logits))

    def mean(where):
        return jnp.sum(jnp.where(where, losses, 0.0)) / jnp.maximum(jnp.sum(where), 1)

    return mean(mask & labels) + mean(mask & ~labels)


def make_loss_fn(
    graphdef: nnx.GraphDef,
    *,
    lm_weight: float = 0.005,
    stop_weight: float = 0.1,
    flow_repeats: int = 4,
    t_min: float = 1e-3,
    ctc_weight: float = 0.0,
    blank_id: int | None = None,
    specaugment: Mapping[str, Any] | None = None,
    train: bool = True,
) -> Callable[[nnx.State, Batch, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]:
    """loss_fn(params, batch, key) -> (loss, metrics) for UniVoice's batches (``univoice.loss``'s keys):
    flow MSE of the head on every TTS frame (``flow_repeats`` draws each) + stop_weight x stop BCE +
    lm_weight x (CE on the ASR transcripts + ctc_weight x the encoder's CTC, as ``univoice.loss``'s;
    ``specaugment`` on their audio in training, as there).
    Metrics: loss, flow_mse, stop_loss, lm_loss, token_accuracy, tts_rows, asr_rows (+ encoder_ctc)."""
    if flow_repeats < 1:
        raise ValueError(f"flow_repeats must be >= 1, got {flow_repeats}")
    check_ctc(ctc_weight, blank_id)

    def loss_fn(params: nnx.State, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        model = nnx.merge(graphdef, params)
        tokens, mel, mel_mask, tts = batch["tokens"], batch["mel"], batch["mel_mask"], batch["tts"]
        k_path, k_dropout = jax.random.split(key)
        mel_lengths = jnp.sum(mel_mask, axis=1, dtype=jnp.int32)
        frames = model.config.normalise(mel)
        features, feature_lengths = asr_training_inputs(batch, key, specaugment, train)
        rows = Rows(text=tokens, text_lengths=jnp.sum(batch["token_mask"], axis=1, dtype=jnp.int32), features=features,
                    feature_lengths=jnp.where(tts, 0, feature_lengths), x_t=frames, cond=None,
                    frame_lengths=jnp.where(tts, mel_lengths, 0), t=jnp.zeros(tts.shape),
                    packing=batch_packing(batch))  # fmt: skip
        out = model(rows, rngs=nnx.Rngs(dropout=k_dropout) if train else None, encoder_logits=bool(ctc_weight))
        frame_mask = mel_mask & tts[:, None]
        batch_size, capacity, n_mels = frames.shape
        x1 = jnp.repeat(frames.reshape(-1, n_mels), flow_repeats, axis=0)
        x_t, t, target = path_sample(x1, k_path, sigma_min=0.0, t_min=t_min)
        states = jnp.repeat(out.states.reshape(batch_size * capacity, -1), flow_repeats, axis=0)
        velocity = model.flow_head(x_t, t, states)
        flow_mse = flow_matching_error(velocity, target, jnp.repeat(frame_mask.reshape(-1), flow_repeats))
        last = jnp.arange(capacity)[None, :] == (mel_lengths - 1)[:, None]
        stop_loss = _balanced_bce(out.stop_logits, last, frame_mask)
        lm, lm_metrics = asr_loss(out, batch, ctc_weight=ctc_weight, blank_id=blank_id)
        loss = flow_mse + stop_weight * stop_loss + lm_weight * lm
        return loss, {"loss": loss, "flow_mse": flow_mse, "stop_loss": stop_loss, **lm_metrics}

    return loss_fn


def _draw_frame(head: FlowHead, key: jax.Array, state: jax.Array, n_mels: int, steps: int,
                temperature: float) -> jax.Array:
    """One frame per row [B, F] by Euler integration of the head's field from scaled noise."""
    x = temperature * jax.random.normal(key, (state.shape[0], n_mels), jnp.float32)
    for i in range(steps):
        x = x + head(x, jnp.full((state.shape[0],), i / steps, jnp.float32), state) / steps
    return x


@functools.partial(jax.jit, static_argnames=("graphdef", "max_frames", "head_steps", "temperature"))
def generate(graphdef: nnx.GraphDef, params: nnx.State, key: jax.Array, text: jax.Array, text_lengths: jax.Array,
             prompt: jax.Array, prompt_lengths: jax.Array, *, max_frames: int, head_steps: int = 16,
             temperature: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Frames continuing each row's prompt until the stop head fires (or ``max_frames``).

    text [B, L], text_lengths [B]: the prompt's text then the target text (with the task symbol);
    prompt [B, P, n_mels] log-mels with prompt_lengths [B] (0: no prompt). Returns (log-mels
    [B, max_frames, n_mels], lengths [B]): the generated frames only, zero after each row's length.
    """
    model = nnx.merge(plain(graphdef), params)
    config = model.config
    batch = text.shape[0]
    zeros = jnp.zeros_like(text_lengths)
    layout = row_layout(jnp.stack([zeros, text_lengths, zeros, prompt_lengths], 1),
                        (0, text.shape[1], 0, prompt.shape[1]))
    empty = jnp.zeros((batch, 0, config.llm.hidden_size), model.dtype)
    prompt_frames = model.frame_in(config.normalise(prompt)).astype(model.dtype)
    sequence = assemble(layout, (empty, model.llm.embed(text), empty, prompt_frames))
    total = layout.total
    hidden, cache = prefill(model.llm, config.llm, sequence, total, layout.length + max_frames)
    state = jnp.take_along_axis(hidden, (total - 1)[:, None, None], axis=1)[:, 0]

    def body(carry):
        k, cache, state, out, lengths, done = carry
        frame = _draw_frame(model.flow_head, jax.random.fold_in(key, k), state, config.n_mels, head_steps,
                            temperature)  # fmt: skip
        out = out.at[:, k].set(jnp.where(done[:, None], 0.0, frame))
        embedded = model.frame_in(frame)[:, None, :].astype(model.dtype)
        hidden, cache = model.llm.hidden_states(embedded, cache=cache)
        stops = model.stop(hidden[:, 0])[:, 0] > 0
        lengths = jnp.where(done, lengths, k + 1)
        return k + 1, cache, hidden[:, 0], out, lengths, done | stops

    def cond(carry):
        k, *_, done = carry
        return (k < max_frames) & ~jnp.all(done)

    out = jnp.zeros((batch, max_frames, config.n_mels), jnp.float32)
    init = (jnp.int32(0), cache, state, out, jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,), bool))
    _, _, _, out, lengths, _ = jax.lax.while_loop(cond, body, init)
    valid = jnp.arange(max_frames)[None, :] < lengths[:, None]
    return jnp.where(valid[..., None], config.denormalise(out), 0.0), lengths
