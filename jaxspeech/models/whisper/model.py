"""Whisper encoder-decoder (Radford et al. 2022) as Flax NNX modules with a pure ``apply``.

Encoder: two GELU Conv1d (kernel 3; the second with stride 2) over log-mel [B, n_mels, frames],
plus the sinusoidal position table, pre-LN transformer layers and a final LayerNorm. Decoder:
token embedding + learned positions, pre-LN layers of causal self-attention, cross-attention
and GELU MLP, a final LayerNorm, and logits from the transposed token embedding (tied).
Numerics and parameter names follow ``transformers``' WhisperForConditionalGeneration, so the
converter is a rename (see ``convert.py``). Every attention goes through
``jaxspeech.nn.attention.attention``.

The encoder accepts any frame count up to ``2 * max_source_positions`` (transformers insists on
exactly that): fine-tuning on bucketed, shorter windows then spends no compute on padding; pass
``frame_mask`` [B, frames] to mask right padding (with an even number of valid frames the
result equals running on the unpadded features).

Pure form: ``graphdef, params = init(config, key)``; ``apply(graphdef, params, features, ids)``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.models.whisper.config import WhisperConfig
from jaxspeech.nn.attention import MaskSpec, attention
from jaxspeech.nn.causal_block import attend_with_cache
from jaxspeech.nn.dropout import dropout

# Transformers' nn.LayerNorm default; flax's is 1e-6.
_LAYER_NORM_EPS = 1e-5

KVCache = tuple[jax.Array, jax.Array]


class HiddenStates(NamedTuple):
    """Every transformer block's output, embeddings excluded (the final LayerNorm not applied).

    encoder: per encoder layer [B, T_enc, D]; encoder_mask: [B, T_enc] bool, or None when the
    input had no frame mask; decoder: per decoder layer [B, L, D].
    """

    encoder: tuple[jax.Array, ...]
    encoder_mask: jax.Array | None
    decoder: tuple[jax.Array, ...]


def _layer_norm(dim: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(dim, epsilon=_LAYER_NORM_EPS, use_fast_variance=False, rngs=rngs)


def _gelu(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=False)


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> jax.Array:
    """Whisper's encoder position table [length, channels]: sin then cos halves."""
    increment = jnp.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = jnp.exp(-increment * jnp.arange(channels // 2, dtype=jnp.float32))
    scaled_time = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_timescales[None, :]
    return jnp.concatenate([jnp.sin(scaled_time), jnp.cos(scaled_time)], axis=1)


class WhisperAttention(nnx.Module):
    """Multi-head attention with Whisper's projections (the key projection has no bias)."""

    def __init__(self, d_model: int, num_heads: int, impl: str, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.impl = impl
        self.q_proj = nnx.Linear(d_model, d_model, rngs=rngs)
        self.k_proj = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)
        self.v_proj = nnx.Linear(d_model, d_model, rngs=rngs)
        self.out_proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def _heads(self, x: jax.Array) -> jax.Array:
        batch, length, d_model = x.shape
        return x.reshape(batch, length, self.num_heads, d_model // self.num_heads)

    def keys_values(self, x: jax.Array) -> KVCache:
        """x [B,Tk,D] -> (k, v) each [B,Tk,H,D/H]."""
        return self._heads(self.k_proj(x)), self._heads(self.v_proj(x))

    def __call__(self, x: jax.Array, keys: jax.Array, values: jax.Array, mask: MaskSpec) -> jax.Array:
        """x [B,Tq,D] attends to keys/values [B,Tk,H,D/H] -> [B,Tq,D]."""
        out = attention(self._heads(self.q_proj(x)), keys, values, mask, impl=self.impl)
        return self.out_proj(out.reshape(x.shape))


class EncoderLayer(nnx.Module):
    def __init__(self, config: WhisperConfig, *, rngs: nnx.Rngs):
        d = config.d_model
        self.self_attn_layer_norm = _layer_norm(d, rngs)
        self.self_attn = WhisperAttention(d, config.encoder_heads, config.attention_impl, rngs=rngs)
        self.final_layer_norm = _layer_norm(d, rngs)
        self.fc1 = nnx.Linear(d, config.encoder_ffn_dim, rngs=rngs)
        self.fc2 = nnx.Linear(config.encoder_ffn_dim, d, rngs=rngs)
        self.dropout = nnx.Dropout(config.dropout)

    def __call__(self, x: jax.Array, mask: jax.Array | None, rngs: nnx.Rngs | None) -> jax.Array:
        h = self.self_attn_layer_norm(x)
        keys, values = self.self_attn.keys_values(h)
        x = x + dropout(self.dropout, self.self_attn(h, keys, values, MaskSpec(key_mask=mask)), rngs)
        return x + dropout(self.dropout, self.fc2(_gelu(self.fc1(self.final_layer_norm(x)))), rngs)


class WhisperEncoder(nnx.Module):
    def __init__(self, config: WhisperConfig, *, rngs: nnx.Rngs):
        d = config.d_model
        self.conv1 = nnx.Conv(config.n_mels, d, kernel_size=3, padding=1, rngs=rngs)
        self.conv2 = nnx.Conv(d, d, kernel_size=3, strides=2, padding=1, rngs=rngs)
        # Fixed sinusoids in Whisper; kept as a parameter so checkpoints round-trip bit-exactly,
        # and frozen in __call__ (exclude it from weight decay when fine-tuning).
        self.embed_positions = nnx.Param(sinusoids(config.max_source_positions, d))
        self.layers = nnx.List([EncoderLayer(config, rngs=rngs) for _ in range(config.encoder_layers)])
        self.layer_norm = _layer_norm(d, rngs)
        self.dropout = nnx.Dropout(config.dropout)

    def __call__(
        self, features: jax.Array, frame_mask: jax.Array | None, rngs: nnx.Rngs | None
    ) -> tuple[jax.Array, jax.Array | None]:
        """features [B, n_mels, T] -> (hidden [B, ceil(T/2), D], mask [B, ceil(T/2)] or None)."""
        hidden, mask, _ = self.forward(features, frame_mask, rngs)
        return hidden, mask

    def forward(
        self, features: jax.Array, frame_mask: jax.Array | None, rngs: nnx.Rngs | None
    ) -> tuple[jax.Array, jax.Array | None, tuple[jax.Array, ...]]:
        """``__call__`` plus every layer's output (before the final LayerNorm), each [B, ceil(T/2), D]."""
        x = jnp.swapaxes(features, 1, 2)
        if frame_mask is not None:
            x = jnp.where(frame_mask[..., None], x, 0.0)
        x = _gelu(self.conv2(_gelu(self.conv1(x))))
        positions = jax.lax.stop_gradient(self.embed_positions[...])
        if x.shape[1] > positions.shape[0]:
            raise ValueError(
                f"{features.shape[2]} frames give {x.shape[1]} encoder positions, more than the "
                f"{positions.shape[0]} this model has (at most {2 * positions.shape[0]} frames)"
            )
        x = dropout(self.dropout, x + positions[: x.shape[1]].astype(x.dtype), rngs)
        # Right padding: encoder position t reads frames 2t-1..2t+1 and is valid iff frame 2t is.
        mask = None if frame_mask is None else frame_mask[:, ::2]
        outputs = []
        for layer in self.layers:
            x = layer(x, mask, rngs)
            outputs.append(x)
        return self.layer_norm(x), mask, tuple(outputs)


class DecoderLayer(nnx.Module):
    def __init__(self, config: WhisperConfig, *, rngs: nnx.Rngs):
        d = config.d_model
        self.self_attn_layer_norm = _layer_norm(d, rngs)
        self.self_attn = WhisperAttention(d, config.decoder_heads, config.attention_impl, rngs=rngs)
        self.encoder_attn_layer_norm = _layer_norm(d, rngs)
        self.encoder_attn = WhisperAttention(d, config.decoder_heads, config.attention_impl, rngs=rngs)
        self.final_layer_norm = _layer_norm(d, rngs)
        self.fc1 = nnx.Linear(d, config.decoder_ffn_dim, rngs=rngs)
        self.fc2 = nnx.Linear(config.decoder_ffn_dim, d, rngs=rngs)
        self.dropout = nnx.Dropout(config.dropout)

    def _self_attention(
        self, h: jax.Array, cache: KVCache | None, length: jax.Array | None
    ) -> tuple[jax.Array, KVCache | None]:
        new_k, new_v = self.self_attn.keys_values(h)
        if cache is None:
            return self.self_attn(h, new_k, new_v, MaskSpec(causal=True)), None
        keys, values, mask, k_next, v_next = attend_with_cache(*cache, new_k, new_v, length)
        return self.self_attn(h, keys, values, mask), (k_next, v_next)

    def _cross_attention(self, h: jax.Array, cross_kv: KVCache, cross_mask: jax.Array | None) -> jax.Array:
        """h [N*B, L, D] attends to the encoder's (k, v) [B, T_enc, H, D/H] of B rows: N >= 1
        consecutive rows of h (a row's beams) read one row of keys, as N*L queries of that row."""
        rows = cross_kv[0].shape[0]
        if h.shape[0] % rows:
            raise ValueError(f"{h.shape[0]} decoder rows cannot share the encoder's {rows} rows")
        folded = h.reshape(rows, -1, h.shape[-1])
        return self.encoder_attn(folded, *cross_kv, MaskSpec(key_mask=cross_mask)).reshape(h.shape)

    def __call__(
        self,
        x: jax.Array,
        cross_kv: KVCache,
        cross_mask: jax.Array | None,
        cache: KVCache | None,
        length: jax.Array | None,
        rngs: nnx.Rngs | None,
    ) -> tuple[jax.Array, KVCache | None]:
        attended, cache = self._self_attention(self.self_attn_layer_norm(x), cache, length)
        x = x + dropout(self.dropout, attended, rngs)
        attended = self._cross_attention(self.encoder_attn_layer_norm(x), cross_kv, cross_mask)
        x = x + dropout(self.dropout, attended, rngs)
        return x + dropout(self.dropout, self.fc2(_gelu(self.fc1(self.final_layer_norm(x)))), rngs), cache


class WhisperDecoder(nnx.Module):
    def __init__(self, config: WhisperConfig, *, rngs: nnx.Rngs):
        d = config.d_model
        # transformers' init (std 0.02): nnx's default (std 1) makes the tied logits ~sqrt(d) at
        # step 0 and drowns the 0.02-scale positions, which slows learning from scratch.
        self.embed_tokens = nnx.Embed(config.vocab_size, d, embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
        self.embed_positions = nnx.Param(0.02 * jax.random.normal(rngs.params(), (config.max_target_positions, d)))
        self.layers = nnx.List([DecoderLayer(config, rngs=rngs) for _ in range(config.decoder_layers)])
        self.layer_norm = _layer_norm(d, rngs)
        self.dropout = nnx.Dropout(config.dropout)

    def token_logits(self, hidden: jax.Array) -> jax.Array:
        """hidden [..., D] -> float32 logits [..., V] over the tied token table [V, D].

        One dot_general contracting the table's minor axis: written as ``hidden @ table.T``
        XLA:CPU may fuse the transpose into the dot and copy the whole table every decoding step.
        """
        table = self.embed_tokens.embedding[...]
        logits = jax.lax.dot_general(hidden.astype(table.dtype), table, (((hidden.ndim - 1,), (1,)), ((), ())))
        return logits.astype(jnp.float32)

    def cross_keys_values(self, encoder_out: jax.Array) -> tuple[KVCache, ...]:
        """Per-layer cross-attention (k, v), each [B, T_enc, H, D/H]; computed once per audio."""
        return tuple(layer.encoder_attn.keys_values(encoder_out) for layer in self.layers)

    def __call__(
        self,
        tokens: jax.Array,
        cross_kv: tuple[KVCache, ...],
        cross_mask: jax.Array | None,
        *,
        cache: tuple[KVCache, ...] | None = None,
        length: jax.Array | None = None,
        rngs: nnx.Rngs | None = None,
    ) -> tuple[jax.Array, tuple[KVCache, ...] | None]:
        """tokens [B,L] -> (logits [B,L,V] float32, updated self-attention cache or None).

        Without a cache the tokens sit at positions 0..L-1. With ``cache`` (per layer (k, v)
        buffers [B, capacity, H, D/H]) and ``length`` [B] (slots already written), they sit at
        positions length..length+L-1 and are written into the buffers there. ``cross_kv`` and
        ``cross_mask`` may hold B/N rows, each shared by N consecutive token rows (beam search).
        """
        logits, cache, _ = self.forward(tokens, cross_kv, cross_mask, cache=cache, length=length, rngs=rngs)
        return logits, cache

    def forward(
        self,
        tokens: jax.Array,
        cross_kv: tuple[KVCache, ...],
        cross_mask: jax.Array | None,
        *,
        cache: tuple[KVCache, ...] | None = None,
        length: jax.Array | None = None,
        rngs: nnx.Rngs | None = None,
    ) -> tuple[jax.Array, tuple[KVCache, ...] | None, tuple[jax.Array, ...]]:
        """``__call__`` plus every layer's output (before the final LayerNorm), each [B, L, D]."""
        steps = tokens.shape[1]
        table = self.embed_positions[...]
        if cache is None:
            if steps > table.shape[0]:
                raise ValueError(f"{steps} decoder tokens exceed max_target_positions={table.shape[0]}")
            positions = table[None, :steps]
        else:
            positions = table[length[:, None] + jnp.arange(steps)[None, :]]
        # A direct lookup keeps the table's dtype (nnx.Embed would compute in float32).
        embedded = jnp.take(self.embed_tokens.embedding[...], tokens, axis=0)
        x = dropout(self.dropout, embedded + positions.astype(embedded.dtype), rngs)
        new_cache, outputs = [], []
        for i, layer in enumerate(self.layers):
            x, layer_cache = layer(x, cross_kv[i], cross_mask, None if cache is None else cache[i], length, rngs)
            new_cache.append(layer_cache)
            outputs.append(x)
        logits = self.token_logits(self.layer_norm(x))
        return logits, None if cache is None else tuple(new_cache), tuple(outputs)


class Whisper(nnx.Module):
    """Whisper encoder-decoder; parameter names mirror transformers' (see ``convert.py``)."""

    def __init__(self, config: WhisperConfig, *, rngs: nnx.Rngs):
        self.encoder = WhisperEncoder(config, rngs=rngs)
        self.decoder = WhisperDecoder(config, rngs=rngs)

    def encode(
        self, features: jax.Array, frame_mask: jax.Array | None = None, *, rngs: nnx.Rngs | None = None
    ) -> tuple[jax.Array, jax.Array | None]:
        """features [B, n_mels, T] -> (encoder states [B, ceil(T/2), D], their mask or None)."""
        return self.encoder(features, frame_mask, rngs)

    def __call__(
        self,
        features: jax.Array,
        decoder_input_ids: jax.Array,
        *,
        frame_mask: jax.Array | None = None,
        rngs: nnx.Rngs | None = None,
        output_hidden_states: bool = False,
    ) -> jax.Array | tuple[jax.Array, HiddenStates]:
        """features [B, n_mels, T], decoder_input_ids [B, L] -> logits [B, L, vocab] (float32).

        output_hidden_states: also return ``HiddenStates`` (every block's output; e.g. for
        SquareHead distillation).
        """
        encoded, mask, encoder_states = self.encoder.forward(features, frame_mask, rngs)
        logits, _, decoder_states = self.decoder.forward(
            decoder_input_ids, self.decoder.cross_keys_values(encoded), mask, rngs=rngs
        )
        if output_hidden_states:
            return logits, HiddenStates(encoder_states, mask, decoder_states)
        return logits


def encoder_token_logits(graphdef: nnx.GraphDef, params: nnx.State, hidden: HiddenStates) -> jax.Array:
    """The last encoder block's states, final LayerNorm applied, projected on the decoder's token
    embeddings (the output projection Whisper ties to them): [B, T_enc, vocab] float32 logits per
    audio frame, for a CTC auxiliary loss without parameters outside Whisper's tree."""
    model = nnx.merge(graphdef, params)
    return model.decoder.token_logits(model.encoder.layer_norm(hidden.encoder[-1]))


def _check_inputs(config_n_mels: int, features: jax.Array, tokens: jax.Array, frame_mask: jax.Array | None):
    if features.ndim != 3 or features.shape[1] != config_n_mels:
        raise ValueError(f"input_features must be [B, {config_n_mels}, frames], got {features.shape}")
    if tokens.ndim != 2 or tokens.shape[0] != features.shape[0]:
        raise ValueError(f"decoder_input_ids must be [B, L] with B={features.shape[0]}, got {tokens.shape}")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"decoder_input_ids must be integers, got {tokens.dtype}")
    mask_shape = (features.shape[0], features.shape[2])
    if frame_mask is not None and (frame_mask.shape != mask_shape or frame_mask.dtype != bool):
        raise ValueError(f"frame_mask must be bool [B, frames] {mask_shape}, got {frame_mask.dtype} {frame_mask.shape}")


def init(config: WhisperConfig, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """A randomly initialised Whisper split into (graphdef, params)."""
    return nnx.split(Whisper(config, rngs=nnx.Rngs(params=key)), nnx.Param)


def abstract_init(config: WhisperConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, params of jax.ShapeDtypeStruct) without allocating or initialising weights.

    Each layer is traced on its own: one trace of a whole large model costs minutes, because
    NNX's RNG counter update inspects a tracer's sharding, which is linear in the trace length.
    """
    shell = dataclasses.replace(config, encoder_layers=1, decoder_layers=1)  # layers replaced below
    model = nnx.eval_shape(lambda: Whisper(shell, rngs=nnx.Rngs(params=0)))
    model.encoder.layers = nnx.List(
        [nnx.eval_shape(lambda: EncoderLayer(config, rngs=nnx.Rngs(params=0))) for _ in range(config.encoder_layers)]
    )
    model.decoder.layers = nnx.List(
        [nnx.eval_shape(lambda: DecoderLayer(config, rngs=nnx.Rngs(params=0))) for _ in range(config.decoder_layers)]
    )
    return nnx.split(model, nnx.Param)


def apply(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    input_features: jax.Array,
    decoder_input_ids: jax.Array,
    *,
    frame_mask: jax.Array | None = None,
    key: jax.Array | None = None,
    output_hidden_states: bool = False,
) -> jax.Array | tuple[jax.Array, HiddenStates]:
    """Pure forward pass: features [B, n_mels, T], ids [B, L] -> logits [B, L, vocab] float32.

    frame_mask: [B, T] bool for right-padded features (None: every frame is real, as in Whisper).
    key: dropout key; None runs deterministically. ``graphdef`` is static under jit.
    output_hidden_states: return ``(logits, HiddenStates)``.
    """
    model = nnx.merge(graphdef, params)
    _check_inputs(model.encoder.conv1.in_features, input_features, decoder_input_ids, frame_mask)
    rngs = None if key is None else nnx.Rngs(dropout=key)
    return model(input_features, decoder_input_ids, frame_mask=frame_mask, rngs=rngs,
                 output_hidden_states=output_hidden_states)
