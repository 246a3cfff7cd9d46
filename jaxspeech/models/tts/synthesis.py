"""Synthesis of log-mels from phoneme ids: encoder -> durations -> length regulation -> the
objective's sampler over the decoder network (and, with a pitch predictor, the frame F0 and voicing)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxspeech import objectives
from jaxspeech.models.hashed_graph import HashedGraphDef, hashed, plain
from jaxspeech.models.tts.conv_stack import masked
from jaxspeech.models.tts.decoder import null_condition, reads_pitch
from jaxspeech.models.tts.model import as_config, decoder_network, encode, objective_of
from jaxspeech.models.tts.prosody import boundaries_of, f0_hz, pitch_condition, pitch_inputs
from jaxspeech.nn.length_regulator import durations_from_log, length_regulate

FRAME_BUCKET = 64  # generate() pads frames to a multiple of this, so jit sees few shapes


class Synthesis(NamedTuple):
    """What :func:`generate` returns. mel: [B,T,n_mels] log-mel in the data's units, zero on
    padding; mel_mask: [B,T] bool; f0: [B,T] Hz and voiced: [B,T] voicing probability from the
    pitch predictor (zero on padding; voiced frames are those above 1/2), None without one or when
    not asked for."""

    mel: jax.Array
    mel_mask: jax.Array
    f0: jax.Array | None
    voiced: jax.Array | None


def _host(x) -> np.ndarray | None:
    """Concrete values of ``x`` for input checks, or None under tracing."""
    try:
        return np.asarray(x)
    except jax.errors.TracerArrayConversionError:
        return None


# The two jitted halves of generate() take the parameters as their flat leaves and the State's treedef
# (a static argument): generate() flattens the nnx.State once per call instead of once per jitted call, each of
# which walks every Variable in Python (about 0.5 ms for the tiny TTS on 2 CPU cores).


@functools.partial(jax.jit, static_argnames=("graphdef", "treedef", "length_scale", "rounding"))
def _encode_for_synthesis(leaves, tokens, token_mask, speaker, boundaries, intonation, *, graphdef, treedef,
                          length_scale, rounding):
    token_mask = token_mask.astype(bool)
    intonation = None if intonation is None else intonation.astype(jnp.int32)
    enc = encode(plain(graphdef), jax.tree.unflatten(treedef, leaves), tokens, token_mask, speaker, boundaries,
                 intonation=intonation)
    durations = durations_from_log(enc["log_durations"], token_mask, length_scale=length_scale, rounding=rounding)
    frames_needed = jnp.ceil(durations.sum(axis=1).max()).astype(jnp.int32)
    return enc["mu"], enc["hidden"], durations, frames_needed


@functools.partial(jax.jit, static_argnames=("graphdef", "treedef", "config", "max_frames", "sampler", "pitch"))
def _synthesise(leaves, mu, hidden, durations, token_mask, speaker, key, guidance_scale, *, graphdef, treedef, config,
                max_frames, sampler, pitch):
    graphdef, params = plain(graphdef), jax.tree.unflatten(treedef, leaves)
    token_mask = token_mask.astype(bool)
    mu_frames, mel_mask = length_regulate(mu, durations, token_mask, max_frames)
    cond = {"mu": mu_frames, "speaker": speaker, "mask": mel_mask}
    f0 = voiced = None
    pitch_predictor = nnx.merge(graphdef, params).pitch
    if pitch_predictor is not None and (pitch or reads_pitch(config)):
        frames, _ = length_regulate(pitch_inputs(hidden, durations), durations, token_mask, max_frames)
        prediction = pitch_predictor(frames, mel_mask, None)
        f0 = jnp.where(mel_mask, f0_hz(config.pitch, prediction[..., 0]), 0.0)
        voiced = jnp.where(mel_mask, jax.nn.sigmoid(prediction[..., 1]), 0.0)
        if reads_pitch(config):
            cond["pitch"] = pitch_condition(config.pitch, prediction[..., 0], voiced, mel_mask)
        if not pitch:
            f0 = voiced = None
    objective, objective_config = objective_of(config)
    uncond = None if guidance_scale is None else null_condition(config, mel_mask)
    noise_mean = mu_frames if config.decoder.noise_around_mu else None
    x = objective.sample(decoder_network(graphdef, params), key, (mu.shape[0], max_frames, config.n_mels), cond=cond,
                         config=objective_config, uncond=uncond, guidance_scale=guidance_scale, noise_mean=noise_mean,
                         **dict(sampler))
    return Synthesis(masked(x * config.mel_std + config.mel_mean, mel_mask), mel_mask, f0, voiced)


def frozen(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
    """``config`` as a static jit argument (a frozen config as is: freezing walks the whole config)."""
    return config if isinstance(config, ml_collections.FrozenConfigDict) else ml_collections.FrozenConfigDict(config)


def sampler_options(config: ml_collections.ConfigDict, options: Mapping[str, Any]) -> dict[str, Any]:
    """The objective's sampler defaults updated with ``options`` (unknown names raise); lists (a saved
    config's JSON) become tuples, so the options stay static arguments."""
    objective, _ = objective_of(config)
    objectives.check_sampler_options(objective, options)
    merged = {**objective.sampler_defaults(), **options}
    return {name: tuple(value) if isinstance(value, list) else value for name, value in merged.items()}


def generate(
    graphdef: nnx.GraphDef | HashedGraphDef,
    params: nnx.State,
    config: Mapping[str, Any],
    tokens: jax.Array,
    token_mask: jax.Array,
    speaker: jax.Array,
    key: jax.Array,
    *,
    guidance_scale: float | None = None,
    length_scale: float = 1.0,
    duration_rounding: str = "ceil",
    intonation: jax.Array | None = None,
    boundary_word_start: jax.Array | None = None,
    boundary_word_end: jax.Array | None = None,
    boundary_mask: jax.Array | None = None,
    max_frames: int | None = None,
    pitch: bool = True,
    **sampler: Any,
) -> Synthesis:
    """Synthesise log-mels: durations -> length regulation -> the objective's sampler (flow
    matching: ``steps``, ``method``, ``temperature``, ``sway``; Matcha: 10 Euler steps, temperature
    0.667, the objective's defaults), and with a pitch predictor the frame-level F0 and voicing.
    Returns a :class:`Synthesis`; mel_mask has ceil(sum of durations) valid frames per row.

    tokens, token_mask: [B,L]; speaker: [B]. guidance_scale: classifier-free guidance against the
    null speaker and zero mu_y (needs training with decoder.cond_drop_prob > 0); None = off.
    duration_rounding: "ceil" (Matcha) or "round" (``nn.length_regulator.durations_from_log``).
    intonation: [B,N] token index per boundary (with the three boundary arrays [B,N]), overriding
    the text-predicted intonation. max_frames: static output length; None = the longest row
    rounded up to a multiple of FRAME_BUCKET (needs concrete inputs). pitch=False skips the pitch
    predictor (f0 and voiced None) unless the decoder reads its pitch: a vocoder that renders the
    mel alone does not need it. graphdef: plain or
    :func:`~jaxspeech.models.hashed_graph.hashed` (cheaper per call), and a frozen config is used as is.
    """
    config = as_config(config)
    graphdef = hashed(graphdef)
    sampler = sampler_options(config, sampler)
    chex.assert_rank([tokens, token_mask, speaker], [2, 2, 1])
    boundaries = boundaries_of(dict(boundary_word_start=boundary_word_start, boundary_word_end=boundary_word_end,
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
        intonation = intonation if choice is None else choice  # host arrays (or tracers): lists are not pytree leaves
    token_mask = token_mask if mask_np is None else mask_np

    leaves, treedef = jax.tree.flatten(params)
    mu, hidden, durations, frames_needed = _encode_for_synthesis(
        leaves, tokens, token_mask, speaker, boundaries, intonation, graphdef=graphdef, treedef=treedef,
        length_scale=float(length_scale), rounding=duration_rounding)
    needed = _host(frames_needed)
    if needed is None and max_frames is None:
        raise ValueError("under jit, generate needs a static max_frames")
    if needed is not None:
        if max_frames is None:
            max_frames = max(FRAME_BUCKET, -(-int(needed) // FRAME_BUCKET) * FRAME_BUCKET)
        elif needed > max_frames:
            raise ValueError(f"predicted durations need {int(needed)} frames but max_frames is {max_frames}")
    return _synthesise(leaves, mu, hidden, durations, token_mask, speaker, key,
                       None if guidance_scale is None else jnp.float32(guidance_scale),
                       graphdef=graphdef, treedef=treedef, config=frozen(config), max_frames=max_frames,
                       sampler=tuple(sorted(sampler.items())), pitch=bool(pitch))
