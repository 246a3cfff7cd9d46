"""Whisper decoding: KV cache and step function for ``jaxspeech.samplers.autoregressive``,
a jitted ``generate``, language detection, and long-audio transcription by 30 s windows.

The cache holds, per decoder layer, self-attention K/V buffers preallocated to
prefix + max_new_tokens slots and the cross-attention K/V computed once from the encoder
output; ``length`` [B] counts the written slots. ``make_step`` closes over the parameters and
turns a cache into the ``step(tokens, cache) -> (logits, cache)`` the generic loops drive.

Layouts: XLA:CPU multiplies matrices with the contracted axis minor-most and copies any operand
that is not, inside the decoding loop, every step: the cross-attention keys and values of every
layer would be copied each step, more memory traffic than the step's own arithmetic. These
loop-invariant operands are therefore stored once in that layout (``_stored``, behind an
optimization barrier, without which XLA folds the transposes back) and the step reads them
through transposed views (``_view``), which XLA turns into layout changes, not copies. The
output projection reads the [V, D] token table as it is (``WhisperDecoder.token_logits``).

Long audio (``transcribe``): windows of 30 s start every ``stride_seconds``; each is decoded
independently (all windows of a file in batches) and consecutive windows' text tokens are
stitched by ``stitch_windows``: the longest common run of tokens between the end of the text so
far and the next window is taken as the overlap and kept once. When the overlap holds fewer
than ``min_overlap_tokens`` common tokens (silence, or words recognised differently) the texts
are concatenated, which can repeat or drop a word at that seam.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxspeech.audio.features import get_preset, log_mel
from jaxspeech.models.hashed_graph import hashed, plain
from jaxspeech.models.whisper.config import SpecialTokens, WhisperConfig
from jaxspeech.samplers.autoregressive import Decoded, check_decoding_choice, decode, raise_if_nonfinite

Cache = dict[str, Any]

# Stored layouts of the cross-attention K and V [B, T_enc, H, D/H]: [B, H, T_enc, D/H] and
# [B, H, D/H, T_enc], the contracted axis minor-most for q k^T and for weights @ v.
_KEYS = (0, 2, 1, 3)
_VALUES = (0, 2, 3, 1)


def _stored(x: jax.Array, axes: Sequence[int]) -> jax.Array:
    """``x`` transposed by ``axes`` and materialised: the barrier keeps XLA from undoing it."""
    return jax.lax.optimization_barrier(jnp.transpose(x, axes))


def _view(stored: jax.Array, axes: Sequence[int]) -> jax.Array:
    """The original array of ``_stored(x, axes)``, as a transposed view (no copy under jit)."""
    return jnp.transpose(stored, np.argsort(axes))


def init_cache(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    input_features: jax.Array,
    *,
    capacity: int,
    frame_mask: jax.Array | None = None,
) -> Cache:
    """Runs the encoder and returns an empty decoder cache with ``capacity`` self-attention slots.

    input_features [B, n_mels, frames]. Leaves: "self" (per layer (k, v), each [B, slots, H, D/H]),
    "cross" (per layer (k [B, H, T_enc, D/H], v [B, H, D/H, T_enc]), see the module docstring),
    "cross_mask" [B, T_enc] bool, "length" [B] int32; batch leads everywhere.
    """
    model = nnx.merge(graphdef, params)
    max_positions = model.decoder.embed_positions.get_value().shape[0]
    if not 1 <= capacity <= max_positions:
        raise ValueError(f"cache capacity {capacity} must be in [1, max_target_positions={max_positions}]")
    cross, mask = _encode(model, input_features, frame_mask)
    batch, encoder_len = cross[0][0].shape[:2]
    empty = jnp.zeros((batch, capacity) + cross[0][0].shape[2:], cross[0][0].dtype)
    return {
        "self": tuple((empty, empty) for _ in cross),
        "cross": tuple((_stored(k, _KEYS), _stored(v, _VALUES)) for k, v in cross),
        "cross_mask": jnp.ones((batch, encoder_len), bool) if mask is None else mask,
        "length": jnp.zeros(batch, jnp.int32),
    }


def _encode(model, input_features: jax.Array, frame_mask: jax.Array | None):
    """The decoder's cross-attention (k, v) per layer, each [B, T_enc, H, D/H], and the encoder mask.

    On CPU the windows go through the encoder one at a time (``lax.map``): a batch's activations
    (an MLP's [B * 1500, 1536] float32 for whisper-tiny) outgrow the caches that one window's
    fit: whisper-tiny's encoder takes 0.75 s for four windows one by one against 0.88 s together, and the
    cache 0.89 s against 0.97 s (2 cores, medians of 5).
    """

    def encode(features, mask):
        encoded, encoder_mask = model.encode(features, mask)
        return model.decoder.cross_keys_values(encoded), encoder_mask

    if jax.default_backend() != "cpu" or input_features.shape[0] == 1:
        return encode(input_features, frame_mask)
    return jax.lax.map(
        lambda row: jax.tree.map(lambda x: x[0], encode(*jax.tree.map(lambda x: x[None], row))),
        (input_features, frame_mask),
    )


def _token_mask(vocab_size: int, tokens: Sequence[int]) -> jax.Array:
    return jnp.zeros(vocab_size, bool).at[jnp.asarray(list(tokens), jnp.int32)].set(True)


def make_step(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    *,
    suppress_tokens: Sequence[int] = (),
    begin_suppress_tokens: Sequence[int] = (),
    begin_position: int = 0,
):
    """``step(tokens [B, L], cache) -> (logits [B, L, V] float32, cache)`` for the sampler loops.

    Logits of ``suppress_tokens`` are set to the lowest finite float (never chosen, still finite
    so that the non-finite check only sees the model's own failures); ``begin_suppress_tokens``
    likewise, at the step that predicts the token after ``begin_position`` tokens (the first
    generated one when begin_position is the prefix length).
    """

    def step(tokens: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
        model = nnx.merge(graphdef, params)
        cross = tuple((_view(k, _KEYS), _view(v, _VALUES)) for k, v in cache["cross"])
        logits, self_cache = model.decoder(
            tokens, cross, cache["cross_mask"], cache=cache["self"], length=cache["length"]
        )
        floor = jnp.finfo(logits.dtype).min
        vocab = logits.shape[-1]
        if suppress_tokens:
            logits = jnp.where(_token_mask(vocab, suppress_tokens), floor, logits)
        if begin_suppress_tokens:
            predicts_first = cache["length"][:, None] + jnp.arange(tokens.shape[1]) + 1 == begin_position
            logits = jnp.where(predicts_first[..., None] & _token_mask(vocab, begin_suppress_tokens), floor, logits)
        return logits, {**cache, "self": self_cache, "length": cache["length"] + tokens.shape[1]}

    return step


@functools.partial(
    jax.jit,
    static_argnames=("graphdef", "config", "max_new_tokens", "beam_size", "temperature", "length_penalty",
                     "suppress_tokens", "begin_suppress_tokens"),
)  # fmt: skip
def _generate(
    graphdef, params, input_features, prefix, key, frame_mask, *, config, max_new_tokens, beam_size, temperature,
    length_penalty, suppress_tokens, begin_suppress_tokens,
):  # fmt: skip
    graphdef = plain(graphdef)
    cache = init_cache(graphdef, params, input_features, capacity=prefix.shape[1] + max_new_tokens,
                       frame_mask=frame_mask)  # fmt: skip
    step = make_step(graphdef, params, suppress_tokens=suppress_tokens, begin_suppress_tokens=begin_suppress_tokens,
                     begin_position=prefix.shape[1])  # fmt: skip
    return decode(step, cache, prefix, max_new_tokens=max_new_tokens, eos_id=config.eos_token_id, beam_size=beam_size,
                  temperature=temperature, key=key, length_penalty=length_penalty)  # fmt: skip


def generate(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    config: WhisperConfig,
    input_features: jax.Array,
    prefix: Sequence[int] | jax.Array,
    *,
    max_new_tokens: int | None = None,
    beam_size: int | None = None,
    temperature: float = 0.0,
    key: jax.Array | None = None,
    length_penalty: float | None = None,
    suppress_tokens: Sequence[int] = (),
    begin_suppress_tokens: Sequence[int] = (),
    frame_mask: jax.Array | None = None,
) -> Decoded:
    """Decodes after the forced ``prefix`` (ids [P] shared by the batch, or [B, P]) in one jit.

    beam_size set: beam search (``length_penalty`` as in ``samplers.autoregressive``; a beam of 1
    decodes as greedy does); else temperature > 0: sampling with ``key``; else greedy. ``max_new_tokens`` defaults to
    half the decoder context (openai-whisper's sample_len) and is capped so that prefix +
    generated tokens fit it. Raises FloatingPointError if the model produced non-finite logits.
    Returns ``Decoded`` (tokens [B, max_new_tokens], eos-padded, prefix excluded).
    """
    input_features = jnp.asarray(input_features)
    batch = input_features.shape[0]
    prefix = jnp.asarray(prefix, jnp.int32)
    if prefix.ndim == 1:
        prefix = jnp.broadcast_to(prefix, (batch, prefix.shape[0]))
    if prefix.ndim != 2 or prefix.shape[0] != batch:
        raise ValueError(f"prefix must be [P] or [B={batch}, P], got {prefix.shape}")
    room = config.max_target_positions - prefix.shape[1]
    if room < 1:
        raise ValueError(
            f"prefix of {prefix.shape[1]} tokens leaves no room in {config.max_target_positions} positions"
        )
    if max_new_tokens is None:
        max_new_tokens = min(config.max_target_positions // 2, room)
    if not 1 <= max_new_tokens <= room:
        raise ValueError(f"max_new_tokens must be in [1, {room}] (max_target_positions - prefix), got {max_new_tokens}")
    check_decoding_choice(beam_size=beam_size, temperature=temperature, key=key)
    if input_features.ndim != 3 or input_features.shape[1] != config.n_mels:
        raise ValueError(f"input_features must be [B, {config.n_mels}, frames], got {input_features.shape}")
    decoded = _generate(
        graphdef, params, input_features, prefix, key, frame_mask,
        config=config, max_new_tokens=max_new_tokens, beam_size=beam_size, temperature=float(temperature),
        length_penalty=length_penalty, suppress_tokens=tuple(int(t) for t in suppress_tokens),
        begin_suppress_tokens=tuple(int(t) for t in begin_suppress_tokens),
    )  # fmt: skip
    return raise_if_nonfinite(decoded)


@functools.partial(jax.jit, static_argnames=("graphdef", "sot", "first_language", "num_languages"))
def _language_logits(graphdef, params, input_features, *, sot, first_language, num_languages):
    model = nnx.merge(plain(graphdef), params)
    ids = jnp.full((input_features.shape[0], 1), sot, jnp.int32)
    logits = model(input_features, ids)[:, 0]
    return logits[:, first_language : first_language + num_languages]


def detect_language(
    graphdef: nnx.GraphDef, params: nnx.State, input_features: jax.Array, tokens: SpecialTokens
) -> list[str]:
    """The most likely language code per example: argmax over language tokens after sot."""
    if not tokens.multilingual or not tokens.languages:
        raise ValueError("language detection needs a multilingual vocabulary")
    logits = _language_logits(graphdef, params, jnp.asarray(input_features), sot=tokens.sot,
                              first_language=tokens.sot + 1, num_languages=len(tokens.languages))  # fmt: skip
    if not bool(jnp.all(jnp.isfinite(logits))):
        raise FloatingPointError("language detection: the model produced non-finite logits")
    return [tokens.languages[i] for i in np.asarray(jnp.argmax(logits, axis=-1))]


def _longest_common_run(a: Sequence[int], b: Sequence[int]) -> tuple[int, int, int]:
    """(end in a, end in b, length) of the longest common contiguous run (earliest in a on ties)."""
    best = (0, 0, 0)
    previous = [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        current = [0] * (len(b) + 1)
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                current[j] = previous[j - 1] + 1
                if current[j] > best[2]:
                    best = (i, j, current[j])
        previous = current
    return best


def stitch_windows(windows: Sequence[Sequence[int]], *, min_overlap_tokens: int = 2) -> list[int]:
    """Joins the text tokens of overlapping windows (see the module docstring).

    The run is searched between the last len(next) tokens of the text so far and the next
    window; the text keeps everything up to the run's end and continues after it in the next.
    """
    if min_overlap_tokens < 1:
        raise ValueError(f"min_overlap_tokens must be >= 1, got {min_overlap_tokens}")
    merged: list[int] = []
    for window in windows:
        window = list(window)
        start = max(0, len(merged) - len(window))
        end_a, end_b, length = _longest_common_run(merged[start:], window)
        if length >= min_overlap_tokens:
            merged = merged[: start + end_a] + window[end_b:]
        else:
            merged += window
    return merged


def window_starts(num_samples: int, window: int, stride: int) -> list[int]:
    """Start samples of the windows covering ``num_samples``: every ``stride``, the last reaching the end."""
    if not 0 < stride <= window:
        raise ValueError(f"stride must be in (0, window={window}], got {stride}")
    count = 1 + max(0, -(-(num_samples - window) // stride))
    return [i * stride for i in range(count)]


def transcribe(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    config: WhisperConfig,
    waveform: np.ndarray,
    prefix: Sequence[int],
    tokens: SpecialTokens,
    *,
    stride_seconds: float = 25.0,
    batch_size: int = 8,
    min_overlap_tokens: int = 2,
    **decode_options: Any,
) -> list[int]:
    """Text token ids of a mono 16 kHz ``waveform`` [S] of any length.

    Windows of 30 s (the log-mel preset's window) every ``stride_seconds`` are decoded after
    ``prefix`` (e.g. ``decoder_prefix(tokens, language="en")``) in batches of up to
    ``batch_size`` (a short last batch is padded with silence, so one compile serves a file),
    then stitched.
    The config's suppress lists apply, and timestamp and other special tokens are suppressed
    (the output is text only). ``decode_options`` go to ``generate`` (beam_size, temperature,
    key, length_penalty, max_new_tokens).
    """
    preset = get_preset(f"whisper_{config.n_mels}")
    graphdef = hashed(graphdef)  # one hash for every batch of windows
    waveform = np.asarray(waveform, np.float32)
    if waveform.ndim != 1 or waveform.size == 0:
        raise ValueError(f"waveform must be a non-empty mono array [samples], got shape {waveform.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    window = preset.pad_or_trim_samples
    starts = window_starts(waveform.size, window, int(round(stride_seconds * preset.sample_rate)))
    batch_size = min(batch_size, len(starts))
    chunks = np.zeros((-(-len(starts) // batch_size) * batch_size, window), np.float32)
    for row, start in enumerate(starts):
        piece = waveform[start : start + window]
        chunks[row, : piece.size] = piece
    # Special tokens other than eot (which ends the text) are never text.
    suppress = set(config.suppress_tokens) | set(range(tokens.sot, config.vocab_size))
    texts = []
    for first in range(0, len(starts), batch_size):
        features = jnp.swapaxes(log_mel(jnp.asarray(chunks[first : first + batch_size]), preset), 1, 2)
        decoded = generate(graphdef, params, config, features, prefix, suppress_tokens=sorted(suppress),
                           begin_suppress_tokens=config.begin_suppress_tokens, **decode_options)  # fmt: skip
        generated, lengths = np.asarray(decoded.tokens), np.asarray(decoded.lengths)
        for row in range(min(batch_size, len(starts) - first)):
            texts.append([int(t) for t in generated[row, : lengths[row]] if t < tokens.eot])
    return stitch_windows(texts, min_overlap_tokens=min_overlap_tokens)
