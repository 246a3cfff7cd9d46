"""A LLaMA-style decoder-only language model (RMSNorm, RoPE, SwiGLU, grouped-query attention) with a
KV cache, in NNX, with parameter names that map one-to-one onto transformers' LlamaForCausalLM
(``convert.py``).

The model is split so that other families can feed it: ``embed(tokens)`` gives token embeddings,
``hidden_states(embeddings, mask=, positions=, cache=)`` runs the blocks on *any* embeddings
(UniVoice puts speech frames between text tokens) under any causal :class:`MaskSpec` (padding,
packed segments, the dual span), and ``logits(hidden)`` projects on the vocabulary. Pure forms:
``init``/``abstract_init`` give (graphdef, params), ``apply(graphdef, params, tokens)`` the logits,
``make_step`` the ``step(tokens, cache)`` of ``jaxspeech.samplers.autoregressive``.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.models.llm.config import LlmConfig
from jaxspeech.nn.attention import MaskSpec
from jaxspeech.nn.causal_block import CausalBlock, KVCache
from jaxspeech.nn.dropout import dropout

Cache = tuple[KVCache, ...]


def _block(config: LlmConfig, rngs: nnx.Rngs) -> CausalBlock:
    return CausalBlock(
        config.hidden_size, config.num_heads, ff_dim=config.intermediate_size, num_kv_heads=config.num_kv_heads,
        head_dim=config.head_dim, norm="rms", mlp="swiglu", rope=True, rope_base=config.rope_theta,
        bias=config.attention_bias, mlp_bias=config.mlp_bias, norm_eps=config.rms_norm_eps,
        dropout_rate=config.dropout, attention_impl=config.attention_impl,
        param_init=nnx.initializers.normal(config.initializer_range), rngs=rngs,
    )  # fmt: skip


class Llama(nnx.Module):
    """Token embedding -> ``num_layers`` causal blocks -> RMSNorm -> logits (tied to the embedding or
    a separate ``lm_head``). Parameter names mirror transformers' (see ``convert.py``)."""

    def __init__(self, config: LlmConfig, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(config.initializer_range)
        self.embed_tokens = nnx.Embed(config.vocab_size, config.hidden_size, embedding_init=init, rngs=rngs)
        self.layers = nnx.List([_block(config, rngs) for _ in range(config.num_layers)])
        self.norm = nnx.RMSNorm(config.hidden_size, epsilon=config.rms_norm_eps, rngs=rngs)
        self.lm_head = (None if config.tie_embeddings else
                        nnx.Linear(config.hidden_size, config.vocab_size, use_bias=False, kernel_init=init, rngs=rngs))
        self.drop = nnx.Dropout(config.dropout)

    def embed(self, tokens: jax.Array) -> jax.Array:
        """tokens [B, T] int -> embeddings [B, T, D] in the table's dtype."""
        return jnp.take(self.embed_tokens.embedding[...], tokens, axis=0)

    def hidden_states(
        self,
        embeddings: jax.Array,
        *,
        mask: MaskSpec | None = None,
        positions: jax.Array | None = None,
        cache: Cache | None = None,
        rngs: nnx.Rngs | None = None,
    ) -> tuple[jax.Array, Cache | None]:
        """embeddings [B, T, D] -> (final-normed hidden states [B, T, D], updated cache or None).

        Without a cache: ``mask`` a causal MaskSpec (default plain causal), ``positions`` [B, T]
        (default 0..T-1). With ``cache`` (one KVCache per layer) the inputs follow the cached ones.
        """
        chex.assert_rank(embeddings, 3)
        x = dropout(self.drop, embeddings, rngs)
        new_cache = []
        for i, layer in enumerate(self.layers):
            x, layer_cache = layer(x, cache=None if cache is None else cache[i], mask=mask, positions=positions,
                                   rngs=rngs)  # fmt: skip
            new_cache.append(layer_cache)
        return self.norm(x), None if cache is None else tuple(new_cache)

    def output_embeddings(self) -> jax.Array:
        """[V, D]: the rows the logits are dot products with (the token table when tied)."""
        if self.lm_head is not None:
            return self.lm_head.kernel[...].T
        return self.embed_tokens.embedding[...]

    def logits(self, hidden: jax.Array) -> jax.Array:
        """hidden [..., D] -> float32 logits [..., V]. Tied: one dot_general contracting the table's
        minor axis (``hidden @ table.T`` can make XLA:CPU copy the whole table every decoding step)."""
        if self.lm_head is not None:
            return self.lm_head(hidden).astype(jnp.float32)
        table = self.embed_tokens.embedding[...]
        logits = jax.lax.dot_general(hidden.astype(table.dtype), table, (((hidden.ndim - 1,), (1,)), ((), ())))
        return logits.astype(jnp.float32)

    def __call__(
        self,
        tokens: jax.Array,
        *,
        mask: MaskSpec | None = None,
        positions: jax.Array | None = None,
        cache: Cache | None = None,
        rngs: nnx.Rngs | None = None,
    ) -> tuple[jax.Array, Cache | None]:
        """tokens [B, T] -> (logits [B, T, V] float32, updated cache or None)."""
        hidden, cache = self.hidden_states(self.embed(tokens), mask=mask, positions=positions, cache=cache, rngs=rngs)
        return self.logits(hidden), cache


def init(config: LlmConfig, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """A randomly initialised decoder split into (graphdef, params)."""
    return nnx.split(Llama(config, rngs=nnx.Rngs(params=key)), nnx.Param)


def abstract_init(config: LlmConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, params of jax.ShapeDtypeStruct) without allocating weights; each layer is traced on
    its own (one trace of a whole large model is slow, see ``whisper.model.abstract_init``)."""
    model = nnx.eval_shape(lambda: Llama(dataclasses.replace(config, num_layers=1), rngs=nnx.Rngs(params=0)))
    model.layers = nnx.List([nnx.eval_shape(lambda: _block(config, nnx.Rngs(params=0)))
                             for _ in range(config.num_layers)])  # fmt: skip
    return nnx.split(model, nnx.Param)


def init_cache(config: LlmConfig, batch: int, capacity: int, dtype=jnp.float32) -> Cache:
    """An empty cache of ``capacity`` slots per row and layer (at most max_position_embeddings)."""
    if not 1 <= capacity <= config.max_position_embeddings:
        raise ValueError(f"cache capacity {capacity} must be in [1, max_position_embeddings="
                         f"{config.max_position_embeddings}]")  # fmt: skip
    shape = (batch, capacity, config.num_kv_heads, config.head_dim)
    empty = KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((batch,), jnp.int32))
    return tuple(empty for _ in range(config.num_layers))


def prefill(model: Llama, config: LlmConfig, embeddings: jax.Array, lengths: jax.Array,
            capacity: int) -> tuple[jax.Array, Cache]:
    """Right-padded embeddings [B, T, D] with ``lengths`` [B] real ones, run into a fresh cache of
    ``capacity`` slots: (final-normed states [B, T, D], the cache with each row's length its own). The
    padding's slots are overwritten by the next inputs and never attended (causal: no real input reads
    a later slot)."""
    hidden, cache = model.hidden_states(embeddings, cache=init_cache(config, embeddings.shape[0], capacity,
                                                                     embeddings.dtype))  # fmt: skip
    return hidden, tuple(layer._replace(length=lengths) for layer in cache)


def _check_tokens(tokens: jax.Array) -> None:
    chex.assert_rank(tokens, 2)
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"tokens must be integer ids [B, T], got {tokens.dtype}")


def apply(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    tokens: jax.Array,
    *,
    mask: MaskSpec | None = None,
    positions: jax.Array | None = None,
    key: jax.Array | None = None,
) -> jax.Array:
    """Pure forward pass: tokens [B, T] -> logits [B, T, V] float32, like ``LlamaForCausalLM``.

    mask: a causal MaskSpec (e.g. ``MaskSpec.from_lengths(lengths, T, causal=True)`` for right
    padding); positions [B, T] (default 0..T-1); key: dropout key (None: deterministic).
    """
    _check_tokens(tokens)
    model = nnx.merge(graphdef, params)
    rngs = None if key is None else nnx.Rngs(dropout=key)
    return model(tokens, mask=mask, positions=positions, rngs=rngs)[0]


def make_step(graphdef: nnx.GraphDef, params: nnx.State):
    """``step(tokens [B, L], cache) -> (logits [B, L, V] float32, cache)`` for
    ``jaxspeech.samplers.autoregressive`` (greedy, sample, beam_search) over ``init_cache``'s cache."""

    def step(tokens: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
        return nnx.merge(graphdef, params)(tokens, cache=cache)

    return step


def resize_vocabulary(config: LlmConfig, params: nnx.State, vocab_size: int) -> tuple[LlmConfig, nnx.State]:
    """(config, params) with the token embedding (and an untied output projection) grown to
    ``vocab_size`` rows: new tokens (e.g. task symbols added to a pretrained tokenizer) start at the
    mean of the existing rows, so they perturb nothing until trained; existing ids keep their rows."""
    if vocab_size < config.vocab_size:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the model's {config.vocab_size}: shrinking "
                         "would drop trained tokens")  # fmt: skip
    grown = jax.tree.map(lambda x: x, params)  # a new tree; leaves are replaced below
    extra = vocab_size - config.vocab_size

    def grow(rows: jax.Array, axis: int) -> jax.Array:
        mean = jnp.mean(rows, axis=axis, keepdims=True)
        return jnp.concatenate([rows, jnp.repeat(mean, extra, axis=axis)], axis=axis)

    grown["embed_tokens"]["embedding"] = nnx.Param(grow(params["embed_tokens"]["embedding"][...], 0))
    if "lm_head" in params:
        grown["lm_head"]["kernel"] = nnx.Param(grow(params["lm_head"]["kernel"][...], 1))
    return dataclasses.replace(config, vocab_size=vocab_size), grown
