import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.samplers.autoregressive import (
    beam_search,
    decode,
    greedy,
    length_normalised,
    raise_if_nonfinite,
    sample,
)
from jaxspeech.samplers.ctc_prefix_score import ctc_prefix_scorer
from tests.samplers.test_ctc_prefix_score import labelling_probs, prefix_prob

VOCAB, EOS = 5, 0


def toy_model(seed=0, vocab=VOCAB, batch=2):
    """A non-Markov toy LM: logits depend on the token, a per-row context and the whole history
    (a cache of token counts), so beam search must carry and reorder the cache correctly."""
    rng = np.random.default_rng(seed)
    emb = jnp.asarray(rng.normal(size=(vocab, vocab)), jnp.float32)
    mix = jnp.asarray(0.7 * rng.normal(size=(vocab, vocab)), jnp.float32)
    ctx = jnp.asarray(rng.normal(size=(batch, vocab)), jnp.float32)

    def step(tokens, cache):
        hist = cache["hist"][:, None, :] + jnp.cumsum(jax.nn.one_hot(tokens, vocab), axis=1)
        # "ctx" is never changed, so beam search passes it once per row: one row per K beams.
        ctx = jnp.repeat(cache["ctx"], tokens.shape[0] // cache["ctx"].shape[0], axis=0)
        logits = emb[tokens] + hist @ mix + ctx[:, None, :]
        return logits, {**cache, "hist": hist[:, -1]}

    def empty_cache(rows=None):
        rows = slice(None) if rows is None else rows
        return {"hist": jnp.zeros((batch, vocab))[rows], "ctx": ctx[rows], "row": jnp.arange(batch)[rows]}

    return step, empty_cache


def full_log_probs(step, cache, sequence):
    """Log-probs [B, L-1, V] of every position, re-running the model on the whole sequence."""
    logits, _ = jax.jit(step)(jnp.asarray(sequence, jnp.int32), cache)
    return jax.nn.log_softmax(logits[:, :-1], axis=-1)


def brute_force_greedy(step, cache, prefix, n, eos=EOS):
    seq = np.asarray(prefix)
    done = np.zeros(len(seq), bool)
    for _ in range(n):
        logits, _ = jax.jit(step)(jnp.asarray(seq, jnp.int32), cache)
        nxt = np.where(done, eos, np.argmax(np.asarray(logits[:, -1]), -1))
        done |= nxt == eos
        seq = np.concatenate([seq, nxt[:, None]], 1)
    return seq[:, prefix.shape[1] :]


def test_greedy_matches_rerunning_the_full_model_and_stops_at_eos():
    step, empty = toy_model()
    prefix = np.array([[3, 1], [2, 2]])
    out = jax.jit(lambda c, p: greedy(step, c, p, max_new_tokens=8, eos_id=EOS))(empty(), prefix)
    expected = brute_force_greedy(step, empty(), prefix, 8)
    np.testing.assert_array_equal(out.tokens, expected)
    for row in range(2):
        hits = np.flatnonzero(expected[row] == EOS)
        assert out.lengths[row] == (hits[0] if hits.size else 8)
    assert (expected == EOS).any(), "the toy model should end at least one row early"
    # Score = summed log-probs of the generated tokens up to and including eos.
    full = np.concatenate([prefix, expected], 1)
    lp = np.asarray(full_log_probs(step, empty(), full))
    for row in range(2):
        n = min(int(out.lengths[row]) + 1, 8)
        p = prefix.shape[1]
        picked = lp[row, np.arange(p - 1, p - 1 + n), full[row, p : p + n]]
        np.testing.assert_allclose(out.scores[row], picked.sum(), rtol=1e-5)
    assert bool(out.finite.all())


def test_sampling_follows_the_model_distribution():
    step, empty = toy_model()
    prefix = np.array([[3], [1]])
    keys = jax.random.split(jax.random.key(0), 2000)
    def first_token(key):
        return sample(step, empty(), prefix, key, max_new_tokens=1, eos_id=EOS, temperature=1.5).tokens[:, 0]

    first = jax.vmap(first_token)(keys)
    logits, _ = step(jnp.asarray(prefix), empty())
    probs = np.asarray(jax.nn.softmax(logits[:, -1] / 1.5))
    for row in range(2):
        freq = np.bincount(np.asarray(first[:, row]), minlength=VOCAB) / len(keys)
        np.testing.assert_allclose(freq, probs[row], atol=0.04)  # 4 standard errors
    # A near-zero temperature is greedy.
    cold = sample(step, empty(), prefix, jax.random.key(3), max_new_tokens=6, eos_id=EOS, temperature=1e-4)
    np.testing.assert_array_equal(cold.tokens, greedy(step, empty(), prefix, max_new_tokens=6, eos_id=EOS).tokens)
    with pytest.raises(ValueError, match="temperature"):
        sample(step, empty(), prefix, jax.random.key(0), max_new_tokens=2, eos_id=EOS, temperature=0.0)


def test_beam_one_is_greedy():
    step, empty = toy_model(seed=1, batch=6)
    prefix = np.array([[3, 1], [2, 4], [1, 1], [4, 3], [2, 2], [3, 3]])
    g = greedy(step, empty(), prefix, max_new_tokens=7, eos_id=EOS)
    assert 0 < int((g.lengths < 7).sum()) < 6, "want rows that end early and rows that run out"
    # Even with a length penalty: a lone beam stops at its first eos, as greedy does.
    b = beam_search(step, empty(), prefix, beam_size=1, max_new_tokens=7, eos_id=EOS, length_penalty=1.0)
    np.testing.assert_array_equal(b.tokens, g.tokens)
    np.testing.assert_array_equal(b.lengths, g.lengths)


def exhaustive_best(step, cache, prefix_row, n, penalty):
    """Best length-normalised hypothesis over every sequence of at most n tokens (ending in eos,
    or n tokens without eos), by direct enumeration."""
    best, best_score = None, -np.inf
    p = len(prefix_row)
    for length in range(1, n + 1):
        for seq in itertools.product(range(VOCAB), repeat=length):
            if EOS in seq[:-1] or (seq[-1] != EOS and length < n):
                continue
            lp = np.asarray(full_log_probs(step, cache, np.asarray([list(prefix_row) + list(seq)])))[0]
            total = sum(lp[p - 1 + i, seq[i]] for i in range(length))
            text_len = length - 1 if seq[-1] == EOS else length
            score = float(length_normalised(jnp.float32(total), jnp.int32(text_len), penalty))
            if score > best_score:
                best, best_score = list(seq), score
    return best, best_score


@pytest.mark.parametrize("penalty", [None, 0.6])
def test_wide_beam_search_is_exhaustive_search(penalty):
    # With beam_size >= every possible hypothesis, openai's rules keep them all, so the result
    # must be the best sequence found by enumerating all of them.
    step, empty = toy_model(seed=5)
    prefix = np.array([[3, 1], [2, 4]])
    n = 3
    out = beam_search(step, empty(), prefix, beam_size=VOCAB**n, max_new_tokens=n, eos_id=EOS, length_penalty=penalty)
    for row in range(2):
        cache = empty(slice(row, row + 1))
        seq, score = exhaustive_best(step, cache, prefix[row], n, penalty)
        got = np.asarray(out.tokens[row])
        np.testing.assert_array_equal(got[: len(seq)], seq)
        assert (got[len(seq) :] == EOS).all()
        np.testing.assert_allclose(out.scores[row], score, rtol=1e-5)


def test_joint_beam_with_weight_zero_is_the_plain_beam_search():
    # Every one of the 2K best extensions lies in its beam's 2K best tokens: pre_beam 2K loses nothing.
    step, empty = toy_model(seed=2, batch=2)
    prefix = np.array([[3, 1], [2, 4]])
    scorer = ctc_prefix_scorer(jnp.zeros((2, 4, VOCAB)), jnp.array([4, 3]), blank_id=EOS, eos_id=EOS)
    plain = beam_search(step, empty(), prefix, beam_size=2, max_new_tokens=5, eos_id=EOS)
    joint = beam_search(step, empty(), prefix, beam_size=2, max_new_tokens=5, eos_id=EOS, scorer=scorer,
                        scorer_weight=0.0, pre_beam=4)  # fmt: skip
    np.testing.assert_array_equal(joint.tokens, plain.tokens)
    np.testing.assert_allclose(joint.scores, plain.scores, rtol=1e-6)


@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_wide_joint_beam_search_is_exhaustive_search_over_joint_scores(weight):
    # Joint score of a hypothesis: (1 - w) x the model's log-probability + w x the CTC log-probability of
    # its labelling (ended by eos) or of its prefix (cut by max_new_tokens), by enumerating CTC paths.
    step, empty = toy_model(seed=6)
    prefix = np.array([[3, 1], [2, 4]])
    n, frames = 3, 4
    ctc_logits = np.random.default_rng(7).normal(scale=2.0, size=(2, frames, VOCAB)).astype(np.float32)
    scorer = ctc_prefix_scorer(jnp.asarray(ctc_logits), jnp.array([frames, frames]), blank_id=EOS, eos_id=EOS)
    out = beam_search(step, empty(), prefix, beam_size=VOCAB**n, max_new_tokens=n, eos_id=EOS, scorer=scorer,
                      scorer_weight=weight, pre_beam=VOCAB)  # fmt: skip
    for row in range(2):
        cache = empty(slice(row, row + 1))
        probs = labelling_probs(np.asarray(jax.nn.log_softmax(ctc_logits[row])), blank=EOS)
        best, best_score = None, -np.inf
        for length in range(1, n + 1):
            for seq in itertools.product(range(VOCAB), repeat=length):
                if EOS in seq[:-1] or (seq[-1] != EOS and length < n):
                    continue
                lp = np.asarray(full_log_probs(step, cache, np.asarray([list(prefix[row]) + list(seq)])))[0]
                model = sum(lp[len(prefix[row]) - 1 + i, seq[i]] for i in range(length))
                finished = seq[-1] == EOS
                with np.errstate(divide="ignore"):  # labellings CTC cannot produce in 4 frames
                    ctc = np.log(probs[seq[:-1]] if finished else prefix_prob(probs, seq))
                text_len = length - 1 if finished else length
                score = float(length_normalised(jnp.float32((1 - weight) * model + weight * ctc), jnp.int32(text_len),
                                                None))
                if score > best_score:
                    best, best_score = list(seq), score
        got = np.asarray(out.tokens[row])
        np.testing.assert_array_equal(got[: len(best)], best)
        np.testing.assert_allclose(out.scores[row], best_score, rtol=1e-4)


def test_beam_search_shares_the_cache_leaves_the_step_leaves_untouched_between_beams():
    model, empty = toy_model(seed=2)
    prefix = np.array([[3, 1], [2, 4]])
    search = dict(beam_size=3, max_new_tokens=4, eos_id=EOS, length_penalty=0.6)
    seen = set()

    def step(tokens, cache):  # records (token rows, "ctx" rows, "hist" rows) of every call
        seen.add((tokens.shape[0], cache["ctx"].shape[0], cache["hist"].shape[0]))
        return model(tokens, cache)

    def copying(tokens, cache):  # hands back a new array for every leaf: all are per beam
        logits, cache = model(tokens, cache)
        return logits, jax.tree.map(lambda x: x + 0, cache)

    kept, copied = (beam_search(s, empty(), prefix, **search) for s in (step, copying))
    assert seen == {(2, 2, 2), (6, 2, 6)}  # the prefix once per row, then per beam; ctx per row
    np.testing.assert_array_equal(kept.tokens, copied.tokens)
    np.testing.assert_allclose(kept.scores, copied.scores, rtol=1e-6)

    def inconsistent(tokens, cache):  # "ctx" untouched for the prefix, then changed per token
        logits, cache = model(tokens, cache)
        return logits, cache if tokens.shape[1] > 1 else {**cache, "ctx": cache["ctx"] * 1.5}

    with pytest.raises(ValueError, match="cannot tell which leaves to reorder"):
        beam_search(inconsistent, empty(), prefix, **search)


def test_nonfinite_logits_stop_the_row_and_raise_outside_jit():
    step, empty = toy_model()

    def broken(tokens, cache):
        logits, cache = step(tokens, cache)
        # Row 1's logits turn NaN once it has generated 2 tokens after its 2-token prefix.
        row = jnp.repeat(cache["row"], tokens.shape[0] // cache["row"].shape[0])  # shared by the beams
        bad = ((cache["hist"].sum(-1) >= 4) & (row == 1))[:, None, None]
        return jnp.where(bad, jnp.nan, logits), cache

    prefix = np.array([[3, 1], [2, 2]])
    outs = []
    for run in (
        lambda: greedy(broken, empty(), prefix, max_new_tokens=6, eos_id=99),
        lambda: beam_search(broken, empty(), prefix, beam_size=2, max_new_tokens=6, eos_id=99),
    ):
        outs.append(jax.jit(run)())
        np.testing.assert_array_equal(outs[-1].finite, [True, False])
        with pytest.raises(FloatingPointError, match=r"rows \[1\]"):
            raise_if_nonfinite(outs[-1])
    assert outs[0].lengths[1] == 2  # stopped where the logits went bad
    np.testing.assert_array_equal(outs[0].tokens[0], brute_force_greedy(step, empty(), prefix, 6, eos=99)[0])


def test_bad_arguments_are_named():
    step, empty = toy_model()
    with pytest.raises(ValueError, match="prefix"):
        greedy(step, empty(), np.zeros((2, 0), np.int32), max_new_tokens=2, eos_id=EOS)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy(step, empty(), np.zeros((2, 1), np.int32), max_new_tokens=0, eos_id=EOS)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(step, empty(), np.zeros((2, 1), np.int32), beam_size=0, max_new_tokens=2, eos_id=EOS)
    scorer = ctc_prefix_scorer(jnp.zeros((2, 3, VOCAB)), jnp.array([3, 3]), blank_id=EOS, eos_id=EOS)
    with pytest.raises(ValueError, match="scorer_weight"):
        beam_search(step, empty(), np.ones((2, 1), np.int32), beam_size=2, max_new_tokens=2, eos_id=EOS,
                    scorer=scorer, scorer_weight=1.5)  # fmt: skip
    with pytest.raises(ValueError, match="pre_beam"):
        beam_search(step, empty(), np.ones((2, 1), np.int32), beam_size=2, max_new_tokens=2, eos_id=EOS,
                    scorer=scorer, scorer_weight=0.5, pre_beam=1)  # fmt: skip
    with pytest.raises(ValueError, match="beam_size"):
        decode(step, empty(), np.ones((2, 1), np.int32), max_new_tokens=2, eos_id=EOS, scorer=scorer)
