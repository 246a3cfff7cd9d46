import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.samplers.ctc_decoding import beam_search_batch, greedy_decode, prefix_beam_search


def collapse(path, blank=0):
    out, prev = [], None
    for s in path:
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return tuple(out)


def exact_labelling_log_probs(log_probs):
    """{labelling: log p(labelling)} by summing every path's probability (tiny T, V only)."""
    frames, vocab = log_probs.shape
    scores = {}
    for path in itertools.product(range(vocab), repeat=frames):
        lp = sum(log_probs[t, s] for t, s in enumerate(path))
        key = collapse(path)
        scores[key] = np.logaddexp(scores.get(key, -np.inf), lp)
    return scores


def _one_hot_logits(paths, vocab):
    return jnp.asarray(np.eye(vocab)[np.asarray(paths)] * 5.0, jnp.float32)


def test_greedy_collapses_repeats_drops_blanks_and_respects_the_mask():
    paths = [
        [1, 1, 0, 1, 2, 2, 0, 0],  # -> 1 1 2
        [0, 3, 3, 3, 0, 3, 1, 2],  # valid 6 frames -> 3 3
        [0, 0, 0, 0, 0, 0, 0, 0],  # -> empty
    ]
    mask = jnp.array([[True] * 8, [True] * 6 + [False] * 2, [True] * 8])
    ids, lengths = jax.jit(greedy_decode)(_one_hot_logits(paths, 4), mask)
    np.testing.assert_array_equal(lengths, [3, 2, 0])
    np.testing.assert_array_equal(ids[0], [1, 1, 2, -1, -1, -1, -1, -1])
    np.testing.assert_array_equal(ids[1], [3, 3, -1, -1, -1, -1, -1, -1])
    np.testing.assert_array_equal(ids[2], [-1] * 8)
    assert ids.dtype == jnp.int32


def test_greedy_with_another_blank_id():
    ids, lengths = greedy_decode(_one_hot_logits([[2, 0, 0, 2, 1, 1]], 3), jnp.ones((1, 6), bool), blank_id=2)
    np.testing.assert_array_equal(ids[0, : lengths[0]], [0, 1])


def _random_log_probs(rng, frames, vocab, sharpness=1.5):
    x = rng.normal(size=(frames, vocab)) * sharpness
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("seed", range(6))
def test_wide_beam_is_exact(seed):
    rng = np.random.default_rng(seed)
    frames, vocab = 5, 3
    log_probs = _random_log_probs(rng, frames, vocab)
    exact = exact_labelling_log_probs(log_probs)
    # 2 labels, 5 frames: at most 1+2+4+8+16+32 prefixes ever exist, so nothing is pruned.
    hyps = prefix_beam_search(log_probs, beam_size=64)
    assert len(hyps) == len(exact)
    for labels, score in hyps:
        np.testing.assert_allclose(score, exact[labels], rtol=1e-9)
    best = max(exact, key=exact.get)
    assert hyps[0][0] == best
    assert [s for _, s in hyps] == sorted((s for _, s in hyps), reverse=True)
    np.testing.assert_allclose(np.logaddexp.reduce([s for _, s in hyps]), 0.0, atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_narrow_beam_scores_are_lower_bounds_of_exact_probabilities(seed):
    rng = np.random.default_rng(100 + seed)
    log_probs = _random_log_probs(rng, 6, 4, sharpness=3.0)
    exact = exact_labelling_log_probs(log_probs)
    hyps = prefix_beam_search(log_probs, beam_size=4)
    assert len(hyps) == 4
    # A pruned beam can only lose paths, never invent probability.
    for labels, score in hyps:
        assert score <= exact[labels] + 1e-9
    assert [s for _, s in hyps] == sorted((s for _, s in hyps), reverse=True)
    # (A narrow beam may miss the best labelling: seed 1 here returns (3, 2, 3, 1) at beam 4
    # while (3, 2, 1) is more probable, so "finds the best" is not asserted.)


def test_length_and_batch_helpers():
    rng = np.random.default_rng(7)
    log_probs = np.stack([_random_log_probs(rng, 6, 3) for _ in range(2)])
    batch = beam_search_batch(log_probs, np.array([6, 4]), beam_size=64)
    assert batch[0] == prefix_beam_search(log_probs[0], beam_size=64)
    assert batch[1] == prefix_beam_search(log_probs[1, :4], beam_size=64)
    exact = exact_labelling_log_probs(log_probs[1, :4])
    np.testing.assert_allclose(batch[1][0][1], max(exact.values()), rtol=1e-9)
    assert prefix_beam_search(log_probs[0], length=0) == [((), 0.0)]


def test_beam_search_rejects_logits_and_bad_arguments():
    with pytest.raises(ValueError, match="log-probabilities"):
        prefix_beam_search(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="beam_size"):
        prefix_beam_search(np.log(np.full((3, 4), 0.25)), beam_size=0)
    with pytest.raises(ValueError, match="length"):
        prefix_beam_search(np.log(np.full((3, 4), 0.25)), length=5)
