"""The acoustic model: text encoder + duration predictor + ProsodyFM parts + decoder network, as one
NNX module holding nothing but ``nnx.Param``s, with its pure form (``init``, ``encode``,
``decoder_network``) and the objective its config selects."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jaxspeech import objectives
from jaxspeech.models.tts.decoder import DecoderNetwork
from jaxspeech.models.tts.encoder import DurationPredictor, TextEncoder, norm_epsilon
from jaxspeech.models.tts.prosody import IntonationPredictor, PitchPredictor, TerminalIntonationEncoder, boundary_spans


def as_config(config: Mapping[str, Any]) -> ml_collections.ConfigDict:
    return config if isinstance(config, ml_collections.ConfigDict) else ml_collections.ConfigDict(config)


def objective_of(config: ml_collections.ConfigDict) -> tuple[objectives.Objective, ml_collections.ConfigDict]:
    """The decoder's objective and its hyperparameters (``decoder.<objective>``)."""
    objective = objectives.get(config.decoder.objective)
    if objective.name not in config.decoder:
        raise ValueError(f"config.decoder has no {objective.name!r} section: build the config with "
                         f"tts.default_config(objective={objective.name!r})")
    return objective, config.decoder[objective.name]


class AcousticModel(nnx.Module):
    """Text encoder, duration predictor, intonation encoder/predictor (none with
    ``intonation.num_tokens`` = 0: plain Matcha-TTS), optional pitch predictor and the decoder network."""

    def __init__(self, config: Mapping[str, Any], *, rngs: nnx.Rngs):
        config = as_config(config)
        enc, dp, into = config.encoder, config.duration_predictor, config.intonation
        if config.num_speakers < 1:
            raise ValueError(f"num_speakers must be >= 1, got {config.num_speakers}")
        if not 0 <= config.break_token < config.vocab_size:
            raise ValueError(f"break_token {config.break_token} outside the vocabulary [0, {config.vocab_size})")
        if not config.mel_std > 0:
            raise ValueError(f"mel_std must be > 0, got {config.mel_std}")
        objective_of(config)  # an unknown objective fails here, before any parameter is built
        d = enc.d_model
        self.num_intonation_tokens = into.num_tokens
        self.encoder = TextEncoder(config.vocab_size, config.num_speakers, config.n_mels, rngs=rngs, **dict(enc))
        if into.num_tokens < 0:
            raise ValueError(f"intonation.num_tokens must be >= 0 (0: no intonation tokens), got {into.num_tokens}")
        self.duration = DurationPredictor(d, epsilon=norm_epsilon(enc.architecture), rngs=rngs, **dict(dp))
        tokens = into.num_tokens
        self.intonation = TerminalIntonationEncoder(
            d, num_tokens=tokens, lstm_hidden=into.lstm_hidden, attention_dim=into.attention_dim,
            num_heads=into.num_heads, rngs=rngs,
            contour_points=into.contour_points if into.reconstruction_weight > 0 else None) if tokens else None
        self.intonation_predictor = IntonationPredictor(d, enc.num_heads, tokens, into.num_heads, enc.ff_mult,
                                                        enc.dropout, rngs=rngs) if tokens else None
        self.decoder = DecoderNetwork(config, rngs=rngs)
        p = config.pitch
        self.pitch = PitchPredictor(d, p.channels, p.layers, p.kernel, p.dropout, rngs=rngs) if p.enabled else None

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
        output hidden [B,L,D], and with boundaries intonation_logits [B,N,H,K] and
        intonation_weights [B,N,H,K] (and intonation_contour [B,N,C], the style decoded back, when
        the model has that head).

        Token weights come from the reference ``contour`` [B,N,C] (training), else from
        ``intonation`` [B,N] int token choices, else from the predictor's per-head softmax. A model
        without intonation tokens ignores the boundaries.
        """
        mask = token_mask.astype(bool)
        states = self.encoder.prenet(tokens, mask, speaker, rngs)
        out: dict[str, jax.Array] = {}
        if boundaries is None and (contour is not None or intonation is not None):
            raise ValueError("a boundary contour or intonation choice needs the boundary word spans and mask")
        if self.intonation is None and intonation is not None:
            raise ValueError("this model has no intonation tokens (intonation.num_tokens = 0) to choose from")
        if boundaries is not None and self.intonation is not None:
            start, end = boundaries["boundary_word_start"], boundaries["boundary_word_end"]
            present = boundaries["boundary_mask"].astype(bool)
            chex.assert_rank([start, end, present], 2)
            chex.assert_equal_shape([start, end, present])
            # The predictor must not shape the encoder: it reads detached states.
            logits = self.intonation_predictor(jax.lax.stop_gradient(states), mask, start, end, present, rngs)
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
            span = boundary_spans(start, end, present, tokens.shape[1])
            states = states + jnp.einsum("bnl,bnd->bld", span.astype(style.dtype), style)
            out.update(intonation_logits=logits, intonation_weights=weights)
            if self.intonation.contour_head is not None:
                out["intonation_contour"] = self.intonation.reconstruct(style)
        hidden, mu = self.encoder(states, mask, rngs)
        out.update(mu=mu, hidden=hidden, log_durations=self.duration(hidden, mask, rngs))
        return out


def init(config: Mapping[str, Any], key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Builds an AcousticModel and splits it into (graphdef, params)."""
    return nnx.split(AcousticModel(config, rngs=nnx.Rngs(params=key)), nnx.Param)


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
    """Pure text-side pass (see ``AcousticModel.encode``). key: dropout key, None = deterministic."""
    rngs = None if key is None else nnx.Rngs(dropout=key)
    model = nnx.merge(graphdef, params)
    return model.encode(tokens, token_mask, speaker, boundaries, contour=contour, intonation=intonation, rngs=rngs)


def decoder_network(
    graphdef: nnx.GraphDef, params: nnx.State, *, key: jax.Array | None = None
) -> Callable[[jax.Array, jax.Array, Mapping[str, jax.Array]], jax.Array]:
    """The decoder network as ``net(x [B,T,F], time [B], cond) -> [B,T,F]`` for an objective's loss
    and sampler (cond: see ``decoder.py``). key: dropout key, None = deterministic."""
    decoder = nnx.merge(graphdef, params).decoder
    rngs = None if key is None else nnx.Rngs(dropout=key)
    return lambda x, time, cond: decoder(x, time, cond, rngs=rngs)
