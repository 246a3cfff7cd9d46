"""Autoregressive decoding over a step function: greedy, temperature sampling and beam search
(optionally joint with a prefix scorer such as ``ctc_prefix_score``'s).

The model is any ``step(tokens [B, L] int32, cache) -> (logits [B, L, V], cache)`` whose cache is
a pytree with the batch as the leading axis of every leaf. Beam search repeats and reorders it
along that axis, except the leaves that ``step`` returns untouched (encoder outputs, masks):
those are shared by a row's beams and stay one per row, so with K beams ``step`` receives
tokens and changed leaves of B*K rows (a row's beams adjacent) beside untouched leaves of B
rows, and reads the latter for K token rows each. ``step`` is called once with the whole forced
prefix, then with one token at a time. Every loop is a ``lax.while_loop`` that ends when all
rows have emitted ``eos_id`` or after ``max_new_tokens``, so it runs under ``jax.jit`` with a
fixed-size cache.

Non-finite logits end their row and clear ``Decoded.finite``; call ``raise_if_nonfinite`` on the
result outside jit to stop with a message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import chex
import jax
import jax.numpy as jnp
import numpy as np

Step = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


class PrefixScorer(Protocol):
    """A second opinion on each hypothesis for ``beam_search`` (e.g. CTC prefix scores): ``init(beams)``
    gives the empty hypotheses' state (a pytree, leaves [B, beams, ...]); ``extend(state, tokens [B, K, M])``
    gives (log-score increments [B, K, M], the extended hypotheses' state, leaves [B, K, M, ...])."""

    def init(self, beams: int) -> Any: ...

    def extend(self, state: Any, tokens: jax.Array) -> tuple[jax.Array, Any]: ...


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Decoded:
    """tokens: [B, N] generated tokens (prefix excluded); ``eos_id`` from the first eos on.
    lengths: [B] tokens before the first eos (all N if none). scores: [B] sum of the tokens'
    log-probabilities, eos included (beam search: the length-normalised score it ranked by).
    finite: [B] False where the model produced non-finite logits (the row was stopped there).
    """

    tokens: jax.Array
    lengths: jax.Array
    scores: jax.Array
    finite: jax.Array


def raise_if_nonfinite(decoded: Decoded) -> Decoded:
    """Host-side check: raises FloatingPointError naming the rows with non-finite logits."""
    finite = np.asarray(decoded.finite)
    if not finite.all():
        rows = np.flatnonzero(~finite).tolist()
        raise FloatingPointError(
            f"decoding stopped: the model produced non-finite logits (NaN/inf) for batch rows {rows}"
        )
    return decoded


def _check(prefix: jax.Array, max_new_tokens: int):
    chex.assert_rank(prefix, 2)
    if not jnp.issubdtype(prefix.dtype, jnp.integer) or prefix.shape[1] < 1:
        raise ValueError(f"prefix must be integer tokens [B, P] with P >= 1, got {prefix.dtype} {prefix.shape}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")


def _row_finite(logits: jax.Array) -> jax.Array:
    return jnp.all(jnp.isfinite(logits), axis=-1)


def _lengths(tokens: jax.Array, eos_id: int) -> jax.Array:
    is_eos = tokens == eos_id
    return jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1), tokens.shape[1]).astype(jnp.int32)


def _changed_leaves(given: Any, returned: Any) -> list[bool]:
    """Per leaf of ``returned``: False when it is the very (traced) value found in ``given``."""
    given_ids = {id(leaf) for leaf in jax.tree.leaves(given)}
    return [id(leaf) not in given_ids for leaf in jax.tree.leaves(returned)]


def _token_by_token(
    step: Step,
    cache: Any,
    prefix: jax.Array,
    choose: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    max_new_tokens: int,
    eos_id: int,
) -> Decoded:
    """Shared loop of greedy and sampling: ``choose(logits [B,V], i) -> tokens [B]``."""
    _check(prefix, max_new_tokens)
    batch = prefix.shape[0]
    logits, cache = step(prefix.astype(jnp.int32), cache)
    init = dict(
        i=jnp.int32(0),
        logits=logits[:, -1].astype(jnp.float32),
        cache=cache,
        tokens=jnp.full((batch, max_new_tokens), eos_id, jnp.int32),
        done=jnp.zeros(batch, bool),
        scores=jnp.zeros(batch, jnp.float32),
        finite=jnp.ones(batch, bool),
    )

    def body(s):
        finite = _row_finite(s["logits"])
        logits = jnp.where(finite[:, None], s["logits"], 0.0)
        token = jnp.where(s["done"] | ~finite, eos_id, choose(logits, s["i"]).astype(jnp.int32))
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=1)[:, 0]
        scores = s["scores"] + jnp.where(s["done"] | ~finite, 0.0, log_prob)
        finite = s["finite"] & (finite | s["done"])
        done = s["done"] | (token == eos_id)
        more = (s["i"] + 1 < max_new_tokens) & ~jnp.all(done)

        def advance(cache):
            next_logits, cache = step(token[:, None], cache)
            return next_logits[:, -1].astype(jnp.float32), cache

        next_logits, cache = jax.lax.cond(more, advance, lambda c: (s["logits"], c), s["cache"])
        return dict(i=s["i"] + 1, logits=next_logits, cache=cache, tokens=s["tokens"].at[:, s["i"]].set(token),
                    done=done, scores=scores, finite=finite)  # fmt: skip

    def cond(s):
        return (s["i"] < max_new_tokens) & ~jnp.all(s["done"])

    out = jax.lax.while_loop(cond, body, init)
    return Decoded(tokens=out["tokens"], lengths=_lengths(out["tokens"], eos_id), scores=out["scores"],
                   finite=out["finite"])  # fmt: skip


def greedy(step: Step, cache: Any, prefix: jax.Array, *, max_new_tokens: int, eos_id: int) -> Decoded:
    """Argmax decoding after ``prefix`` [B, P]. Returns a Decoded."""
    return _token_by_token(
        step, cache, prefix, lambda logits, i: jnp.argmax(logits, axis=-1), max_new_tokens=max_new_tokens, eos_id=eos_id
    )


def sample(
    step: Step,
    cache: Any,
    prefix: jax.Array,
    key: jax.Array,
    *,
    max_new_tokens: int,
    eos_id: int,
    temperature: float = 1.0,
) -> Decoded:
    """Ancestral sampling from softmax(logits / temperature); step i uses fold_in(key, i)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use greedy for 0), got {temperature}")

    def choose(logits, i):
        return jax.random.categorical(jax.random.fold_in(key, i), logits / temperature, axis=-1)

    return _token_by_token(step, cache, prefix, choose, max_new_tokens=max_new_tokens, eos_id=eos_id)


def length_normalised(log_prob: jax.Array, length: jax.Array, length_penalty: float | None) -> jax.Array:
    """openai-whisper's ranking: log_prob / length, or / ((5 + length) / 6) ** penalty (Wu et al. 2016)."""
    length = jnp.maximum(length, 1).astype(jnp.float32)
    if length_penalty is None:
        return log_prob / length
    return log_prob / ((5.0 + length) / 6.0) ** length_penalty


def beam_search(
    step: Step,
    cache: Any,
    prefix: jax.Array,
    *,
    beam_size: int,
    max_new_tokens: int,
    eos_id: int,
    length_penalty: float | None = None,
    scorer: PrefixScorer | None = None,
    scorer_weight: float = 0.0,
    pre_beam: int | None = None,
) -> Decoded:
    """Batched beam search with openai-whisper's rules, after ``prefix`` [B, P].

    Each step ranks the beam_size * V extensions by summed log-probability; extensions ending in
    eos that rank above the beam_size-th continuing one become finished hypotheses (the first
    beam_size per row are kept), the best beam_size others continue. A row is complete with
    beam_size finished hypotheses; at ``max_new_tokens`` unfinished rows are topped up with
    their best live beams. The answer is the best by ``length_normalised`` score (length =
    tokens before eos; ``length_penalty`` 0 ranks by the plain sum). With beam_size 1 this is
    exactly greedy decoding.

    With a ``scorer`` (joint decoding, e.g. ``ctc_prefix_score.ctc_prefix_scorer``), each beam's
    ``pre_beam`` most probable tokens (default ESPnet's max(2, 1.5 x beam_size), at most V) are
    ranked instead by (1 - scorer_weight) x the model's log-probability + scorer_weight x the
    scorer's increment; the scores above are then these joint scores.
    """
    _check(prefix, max_new_tokens)
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if scorer is not None and not 0.0 <= scorer_weight <= 1.0:
        raise ValueError(f"scorer_weight must be in [0, 1], got {scorer_weight}")
    if pre_beam is not None and pre_beam < 2:
        raise ValueError(f"pre_beam must be >= 2 (a beam's eos and one continuation), got {pre_beam}")
    batch, k, n = prefix.shape[0], beam_size, max_new_tokens
    logits, stepped = step(prefix.astype(jnp.int32), cache)
    # Leaves the step hands back untouched (encoder outputs, masks) are the same for a row's
    # beams: they stay one per row (see the module docstring); only the others are per beam.
    reordered = _changed_leaves(cache, stepped)
    # The prefix is shared by the beams: run it once, then give every beam a copy of its state.
    leaves, tree = jax.tree.flatten(stepped)
    cache = tree.unflatten([jnp.repeat(x, k, axis=0) if r else x for x, r in zip(leaves, reordered, strict=True)])
    logits = jnp.repeat(logits[:, -1].astype(jnp.float32), k, axis=0)
    rows = jnp.arange(batch)[:, None]
    init = dict(
        i=jnp.int32(0),
        logits=logits,  # [B*K, V]
        cache=cache,
        alive_tokens=jnp.full((batch, k, n), eos_id, jnp.int32),
        # Only beam 0 is live at first: the K copies are identical.
        alive_logp=jnp.where(jnp.arange(k) == 0, 0.0, -jnp.inf)[None].repeat(batch, 0),
        done_tokens=jnp.full((batch, k, n), eos_id, jnp.int32),
        done_logp=jnp.full((batch, k), -jnp.inf),
        done_length=jnp.zeros((batch, k), jnp.int32),
        num_done=jnp.zeros(batch, jnp.int32),
        finite=jnp.ones(batch, bool),
        scored=None if scorer is None else scorer.init(k),
    )
    vocab = logits.shape[-1]
    width = vocab if scorer is None else min(vocab, pre_beam or max(2, int(1.5 * k)))

    def body(s):
        i = s["i"]
        row_finite = _row_finite(s["logits"]).reshape(batch, k)
        # Only live beams of rows still collecting hypotheses count (as greedy ignores finished rows).
        watched = (s["alive_logp"] > -jnp.inf) & (s["num_done"] < k)[:, None]
        finite = s["finite"] & jnp.all(row_finite | ~watched, axis=1)
        log_probs = jax.nn.log_softmax(jnp.where(row_finite.reshape(-1, 1), s["logits"], 0.0))
        log_probs = jnp.where(row_finite.reshape(-1, 1), log_probs, -jnp.inf).reshape(batch, k, vocab)
        if scorer is None:
            extensions, ext_tokens = log_probs, jnp.broadcast_to(jnp.arange(vocab, dtype=jnp.int32), log_probs.shape)
        else:
            model_logp, ext_tokens = jax.lax.top_k(log_probs, width)  # [B, K, width]
            increment, ext_scored = scorer.extend(s["scored"], ext_tokens)
            # A zero weight leaves its term out (0 x -inf would be NaN).
            extensions = sum(w * x for w, x in ((1.0 - scorer_weight, model_logp), (scorer_weight, increment)) if w)
        candidates = (s["alive_logp"][:, :, None] + extensions).reshape(batch, k * width)
        # 2K candidates always hold K that do not end in eos (each beam has at most one eos extension).
        cand_logp, flat = jax.lax.top_k(candidates, 2 * k)
        beam, column = flat // width, flat % width
        token = ext_tokens.reshape(batch, k * width)[rows, flat]
        is_eos = token == eos_id
        cand_tokens = s["alive_tokens"][rows, beam].at[:, :, i].set(token)  # [B, 2K, N]
        continuing_before = jnp.cumsum(~is_eos, axis=1, dtype=jnp.int32) - (~is_eos).astype(jnp.int32)
        # Finished: eos ranked above the K-th continuing candidate, while the row has room.
        newly_done = is_eos & (continuing_before < k) & (cand_logp > -jnp.inf) & (s["num_done"][:, None] < k)
        slot = s["num_done"][:, None] + jnp.cumsum(newly_done, axis=1) - 1
        slot = jnp.where(newly_done & (slot < k), slot, k)  # k = out of range: dropped
        done_tokens = s["done_tokens"].at[rows, slot].set(cand_tokens, mode="drop")
        done_logp = s["done_logp"].at[rows, slot].set(cand_logp, mode="drop")
        done_length = s["done_length"].at[rows, slot].set(i, mode="drop")
        num_done = jnp.minimum(s["num_done"] + jnp.sum(newly_done, axis=1), k)
        # Continuing: the best K non-eos candidates, in rank order.
        order = jnp.argsort(jnp.where(is_eos, 2 * k, jnp.arange(2 * k)), axis=1)[:, :k]
        alive_beam = jnp.take_along_axis(beam, order, axis=1)
        alive_token = jnp.take_along_axis(token, order, axis=1)
        alive_logp = jnp.take_along_axis(cand_logp, order, axis=1)
        alive_tokens = jnp.take_along_axis(cand_tokens, order[:, :, None], axis=1)
        if scorer is not None:
            alive_column = jnp.take_along_axis(column, order, axis=1)
            scored = jax.tree.map(lambda x: x[rows, alive_beam, alive_column], ext_scored)
        else:
            scored = None
        more = (i + 1 < n) & ~jnp.all(num_done >= k)

        def advance(cache):
            source = (rows * k + alive_beam).reshape(-1)
            leaves, tree = jax.tree.flatten(cache)
            cache = tree.unflatten([x[source] if r else x for x, r in zip(leaves, reordered, strict=True)])
            next_logits, stepped = step(alive_token.reshape(-1, 1), cache)
            if any(c and not r for c, r in zip(_changed_leaves(cache, stepped), reordered, strict=True)):
                raise ValueError("step changed a cache leaf on a one-token call that it returned untouched "
                                 "for the prefix; beam_search cannot tell which leaves to reorder")
            return next_logits[:, -1].astype(jnp.float32), stepped

        next_logits, cache = jax.lax.cond(more, advance, lambda c: (s["logits"], c), s["cache"])
        return dict(i=i + 1, logits=next_logits, cache=cache, alive_tokens=alive_tokens, alive_logp=alive_logp,
                    done_tokens=done_tokens, done_logp=done_logp, done_length=done_length, num_done=num_done,
                    finite=finite, scored=scored)  # fmt: skip

    def cond(s):
        return (s["i"] < n) & ~jnp.all(s["num_done"] >= k)

    out = jax.lax.while_loop(cond, body, init)
    # Rows short of K finished hypotheses take their best live beams (already in rank order).
    alive_valid = jnp.arange(k)[None, :] < (k - out["num_done"])[:, None]
    done_valid = jnp.arange(k)[None, :] < out["num_done"][:, None]
    tokens = jnp.concatenate([out["done_tokens"], out["alive_tokens"]], axis=1)
    log_prob = jnp.concatenate([out["done_logp"], out["alive_logp"]], axis=1)
    length = jnp.concatenate([out["done_length"], jnp.broadcast_to(out["i"], (batch, k))], axis=1)
    valid = jnp.concatenate([done_valid, alive_valid], axis=1) & (log_prob > -jnp.inf)
    score = jnp.where(valid, length_normalised(log_prob, length, length_penalty), -jnp.inf)
    best = jnp.argmax(score, axis=1)
    best_tokens = tokens[jnp.arange(batch), best]
    return Decoded(tokens=best_tokens, lengths=_lengths(best_tokens, eos_id),
                   scores=score[jnp.arange(batch), best], finite=out["finite"])  # fmt: skip


def check_decoding_choice(*, beam_size: int | None, temperature: float, key: jax.Array | None,
                          joint: bool = False) -> None:
    """Raises ValueError for an impossible choice of ``decode``'s strategy (checked outside jit);
    ``joint``: a prefix scorer is given."""
    if joint and beam_size is None:
        raise ValueError("joint decoding with a prefix scorer is a beam search: give beam_size (1 = greedy)")
    if beam_size is not None and temperature > 0:
        raise ValueError("choose beam search (beam_size) or sampling (temperature > 0), not both")
    if temperature > 0 and key is None:
        raise ValueError("sampling (temperature > 0) needs an explicit key")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 decodes greedily), got {temperature}")


def decode(
    step: Step,
    cache: Any,
    prefix: jax.Array,
    *,
    max_new_tokens: int,
    eos_id: int,
    beam_size: int | None = None,
    temperature: float = 0.0,
    key: jax.Array | None = None,
    length_penalty: float | None = None,
    scorer: PrefixScorer | None = None,
    scorer_weight: float = 0.0,
    pre_beam: int | None = None,
) -> Decoded:
    """One entry point for the three strategies: ``beam_size`` set -> ``beam_search`` (joint with a
    ``scorer``); else ``temperature`` > 0 -> ``sample`` with ``key``; else ``greedy``."""
    check_decoding_choice(beam_size=beam_size, temperature=temperature, key=key, joint=scorer is not None)
    common = dict(max_new_tokens=max_new_tokens, eos_id=eos_id)
    if beam_size is not None:
        return beam_search(step, cache, prefix, beam_size=beam_size, length_penalty=length_penalty, scorer=scorer,
                           scorer_weight=scorer_weight, pre_beam=pre_beam, **common)  # fmt: skip
    if temperature > 0:
        return sample(step, cache, prefix, key, temperature=temperature, **common)
    return greedy(step, cache, prefix, **common)
