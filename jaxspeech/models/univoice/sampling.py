"""UniVoice inference: speech infilling (TTS, zero-shot voice cloning) and autoregressive transcription (ASR).

TTS: the frames of a row are the prompt's mel followed by the frames to generate; the condition
holds the prompt and zeros after it. Euler steps over a sway-warped time grid (UniVoice: 32 steps,
sway -1) integrate the velocity from noise; classifier-free guidance runs the conditional and the
unconditional rows (text dropped, condition zeroed) as one 2B batch, with the guided velocity's
norm capped at the conditional one's (UniVoice, scale 2). Frames inside the prompt are replaced by
the prompt (F5). ASR: speech embeddings are written into the LLM's KV cache in one prefill, then
the task prompt and the transcript are decoded token by token inside jit
(``samplers.autoregressive``); a model trained with the encoder's CTC (``loss.ctc_weight``) also
decodes jointly with it (``transcribe(ctc_weight=...)``: the CTC prefix scores keep the LLM's beam on
what the audio supports) or transcribes without the LLM (``transcribe_ctc``: best path over the
encoder's token logits).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxspeech.models.hashed_graph import plain
from jaxspeech.models.llm.model import prefill
from jaxspeech.models.univoice.model import Rows
from jaxspeech.samplers.autoregressive import Decoded, check_decoding_choice, decode, raise_if_nonfinite
from jaxspeech.samplers.ctc_decoding import greedy_decode
from jaxspeech.samplers.ctc_prefix_score import ctc_prefix_scorer
from jaxspeech.samplers.ode import sample_ode


def frames_for_text(prompt_frames, prompt_text_length, target_text_length):
    """Frames to generate for a target text at the prompt's speaking rate (frames per text token);
    works on ints and int arrays, at least 1."""
    rate = np.asarray(prompt_frames, np.float64) / np.maximum(np.asarray(prompt_text_length, np.float64), 1.0)
    return np.maximum(np.rint(rate * np.asarray(target_text_length)), 1).astype(np.int32)


@functools.partial(jax.jit, static_argnames=("graphdef", "steps", "guidance_scale", "sway"))
def infill(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    key: jax.Array,
    text: jax.Array,
    text_lengths: jax.Array,
    prompt: jax.Array,
    prompt_lengths: jax.Array,
    frame_lengths: jax.Array,
    *,
    steps: int = 32,
    guidance_scale: float = 2.0,
    sway: float = -1.0,
) -> jax.Array:
    """Mel frames [B, T, n_mels] continuing each row's prompt to ``frame_lengths`` frames.

    text [B, L], text_lengths [B]: the prompt's text followed by the target text. prompt
    [B, T, n_mels] (T: the frame capacity), prompt_lengths [B]: the known frames at the start of each
    row (0: no prompt). frame_lengths [B] (<= T): the prompt plus the frames to generate. Returns the
    full rows (the prompt frames copied, frames past ``frame_lengths`` zero). guidance_scale (static)
    0 runs no unconditional pass.
    """
    graphdef = plain(graphdef)
    batch, capacity, _ = prompt.shape
    config = nnx.merge(graphdef, params).config
    prompt = config.normalise(prompt)
    frames = jnp.arange(capacity)[None, :]
    known = frames < prompt_lengths[:, None]
    valid = frames < frame_lengths[:, None]
    cond = {"text": text, "text_lengths": text_lengths, "cond": jnp.where(known[..., None], prompt, 0.0)}
    uncond = {"text": jnp.zeros_like(text[:1]), "text_lengths": jnp.zeros((1,), text_lengths.dtype),
              "cond": jnp.zeros_like(prompt[:1])}  # fmt: skip

    def velocity(x, t, c):
        repeats = x.shape[0] // batch  # 2 with guidance: conditional rows, then unconditional ones
        rows = Rows(text=c["text"], text_lengths=c["text_lengths"], features=None,
                    feature_lengths=jnp.zeros((x.shape[0],), jnp.int32), x_t=x, cond=c["cond"],
                    frame_lengths=jnp.tile(frame_lengths, repeats), t=t)  # fmt: skip
        return nnx.merge(graphdef, params)(rows).velocity

    guided = dict(uncond=uncond, guidance_scale=guidance_scale, guidance_norm_cap=True) if guidance_scale else {}
    generated = sample_ode(velocity, key, (batch, capacity, prompt.shape[2]), cond=cond, steps=steps, method="euler",
                           sway=sway, **guided)  # fmt: skip
    mel = config.denormalise(jnp.where(known[..., None], prompt, generated))
    return jnp.where(valid[..., None], mel, 0.0)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "eos_id", "beam_size", "temperature",
                                             "ctc_weight"))
def _transcribe(graphdef, params, features, feature_lengths, prompt, key, *, max_new_tokens, eos_id, beam_size,
                temperature, ctc_weight):  # fmt: skip
    graphdef = plain(graphdef)
    model = nnx.merge(graphdef, params)
    states, mask = model.encode(features, feature_lengths)
    speech, lengths = model.adapt(states, mask)
    capacity = speech.shape[1] + prompt.shape[1] + max_new_tokens
    _, cache = prefill(model.llm, model.config.llm, speech, lengths, capacity)
    joint = {}
    if ctc_weight:
        encoder = model.encoder_token_logits(states, mask)
        scorer = ctc_prefix_scorer(encoder.logits, encoder.mask.sum(-1), blank_id=eos_id, eos_id=eos_id)
        joint = dict(scorer=scorer, scorer_weight=ctc_weight)

    def step(tokens, cache):
        return nnx.merge(graphdef, params).llm(tokens, cache=cache)

    return decode(step, cache, prompt, max_new_tokens=max_new_tokens, eos_id=eos_id, beam_size=beam_size,
                  temperature=temperature, key=key, **joint)  # fmt: skip


def transcribe(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    features: jax.Array,
    feature_lengths: jax.Array,
    prompt: jax.Array,
    *,
    max_new_tokens: int,
    eos_id: int,
    beam_size: int | None = None,
    temperature: float = 0.0,
    key: jax.Array | None = None,
    ctc_weight: float = 0.0,
) -> Decoded:
    """Transcript tokens after the task ``prompt`` (ids [P] shared by the rows, or [B, P]) for audio
    features [B, Tf, n_mels] with ``feature_lengths`` [B] valid frames: greedy, beam search
    (``beam_size``) or sampling (temperature > 0 with ``key``). ``ctc_weight`` > 0 makes the beam
    search joint CTC/attention decoding (Watanabe et al. 2017): the encoder's CTC prefix scores
    (blank = ``eos_id``, as in training) weigh ``ctc_weight`` against the LLM's 1 - ``ctc_weight``;
    meaningful for a model trained with ``loss.ctc_weight`` > 0. Raises FloatingPointError for
    non-finite logits. Returns ``Decoded`` (tokens [B, max_new_tokens], eos from the first eos)."""
    features = jnp.asarray(features)
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim == 1:
        prompt = jnp.broadcast_to(prompt, (features.shape[0], prompt.shape[0]))
    if prompt.ndim != 2 or prompt.shape[0] != features.shape[0] or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be [P] or [B={features.shape[0]}, P] with P >= 1, got {prompt.shape}")
    check_decoding_choice(beam_size=beam_size, temperature=temperature, key=key, joint=bool(ctc_weight))
    decoded = _transcribe(graphdef, params, features, jnp.asarray(feature_lengths, jnp.int32), prompt, key,
                          max_new_tokens=max_new_tokens, eos_id=eos_id, beam_size=beam_size,
                          temperature=float(temperature), ctc_weight=float(ctc_weight))  # fmt: skip
    return raise_if_nonfinite(decoded)


@functools.partial(jax.jit, static_argnames=("graphdef", "blank_id"))
def transcribe_ctc(graphdef: nnx.GraphDef, params: nnx.State, features: jax.Array, feature_lengths: jax.Array, *,
                   blank_id: int) -> tuple[jax.Array, jax.Array]:
    """Best-path CTC transcripts from the audio encoder's token logits alone (``SpeechLM.encoder_token_logits``)
    for features [B, Tf, n_mels] with ``feature_lengths`` [B]: (ids [B, Te] int32, collapsed labels first
    then -1; lengths [B]). ``blank_id``: the blank the model was trained with (``<eos>``)."""
    model = nnx.merge(plain(graphdef), params)
    encoder = model.encoder_token_logits(*model.encode(features, jnp.asarray(feature_lengths, jnp.int32)))
    return greedy_decode(encoder.logits, encoder.mask, blank_id=blank_id)
