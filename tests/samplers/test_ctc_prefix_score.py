import itertools
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxspeech.samplers.ctc_prefix_score import ctc_prefix_scorer

FRAMES, VOCAB, BLANK = 5, 4, 0


def labelling_probs(log_probs, blank=BLANK):
    """Probability of every labelling, by enumerating every CTC path over log_probs [T, V]."""
    probs = defaultdict(float)
    for path in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        labels, previous = [], None
        for c in path:
            if c != previous and c != blank:
                labels.append(c)
            previous = c
        probs[tuple(labels)] += float(np.exp(sum(log_probs[t, c] for t, c in enumerate(path))))
    return probs


def prefix_prob(probs, prefix):
    return sum(p for labels, p in probs.items() if labels[: len(prefix)] == tuple(prefix))


def random_logits(seed, batch=1, frames=FRAMES, vocab=VOCAB):
    return np.random.default_rng(seed).normal(scale=2.0, size=(batch, frames, vocab)).astype(np.float32)


def walk(scorer, path):
    """Increments [len(path), V] of every token after each prefix of ``path`` (row 0, one beam)."""
    batch, _, vocab = scorer.log_probs.shape
    state, increments = scorer.init(1), []
    candidates = jnp.broadcast_to(jnp.arange(vocab, dtype=jnp.int32), (batch, 1, vocab))
    for token in path:
        increment, extended = scorer.extend(state, candidates)
        increments.append(np.asarray(increment[0, 0]))
        state = jax.tree.map(lambda x, token=token: x[:, :, token], extended)
    return np.stack(increments)


@pytest.mark.parametrize("seed", [0, 1])
def test_prefix_scores_are_the_enumerated_prefix_probabilities(seed):
    # blank = eos (UniVoice's convention): the eos candidate scores the whole labelling.
    logits = random_logits(seed)
    probs = labelling_probs(np.asarray(jax.nn.log_softmax(logits[0])))
    path = (2, 2, 1)  # a repeated label needs a blank between its two frames
    scorer = ctc_prefix_scorer(jnp.asarray(logits), jnp.array([FRAMES]), blank_id=BLANK, eos_id=BLANK)
    for i, scored in enumerate(walk(scorer, path + (3,))):
        g = path[:i]
        for c in range(VOCAB):
            wanted = probs[g] if c == BLANK else prefix_prob(probs, g + (c,))
            expected = np.log(wanted) - np.log(prefix_prob(probs, g)) if wanted > 0 else -np.inf
            np.testing.assert_allclose(scored[c], expected, rtol=1e-4, atol=1e-4, err_msg=f"{g} + {c}")


def test_finished_scores_telescope_to_the_ctc_likelihood_of_optax():
    # A labelling's increments plus its eos's sum to log p(labelling | x): optax's CTC loss, negated.
    # The eos is a token of its own here (id 4); 3 is an ordinary label, repeated.
    eos, frames = VOCAB, 9
    logits = random_logits(2, batch=2, frames=frames, vocab=VOCAB + 1)
    lengths = np.array([9, 7])
    labels = np.array([[1, 3, 3, 2], [2, 1, 0, 0]])
    label_lengths = np.array([4, 2])
    scorer = ctc_prefix_scorer(jnp.asarray(logits), jnp.asarray(lengths), blank_id=BLANK, eos_id=eos)
    paddings = (np.arange(frames)[None] >= lengths[:, None]).astype(np.float32)
    label_paddings = (np.arange(4)[None] >= label_lengths[:, None]).astype(np.float32)
    nll = optax.ctc_loss(jnp.asarray(logits), jnp.asarray(paddings), jnp.asarray(labels), jnp.asarray(label_paddings),
                         blank_id=BLANK)  # fmt: skip
    for row in range(2):
        state, total = scorer.init(1), 0.0
        for token in [*labels[row, : label_lengths[row]], eos]:
            increment, state = scorer.extend(state, jnp.full((2, 1, 1), token, jnp.int32))
            state = jax.tree.map(lambda x: x[:, :, 0], state)
            total += float(increment[row, 0, 0])
        np.testing.assert_allclose(total, -float(nll[row]), rtol=1e-4)


def test_padded_frames_change_nothing_and_the_blank_is_never_a_label():
    logits = random_logits(3)
    padded = np.concatenate([logits, random_logits(4, frames=3)], axis=1)
    eos = VOCAB - 1
    short = walk(ctc_prefix_scorer(jnp.asarray(logits), jnp.array([FRAMES]), blank_id=BLANK, eos_id=eos), (1, 2, 2))
    long = walk(ctc_prefix_scorer(jnp.asarray(padded), jnp.array([FRAMES]), blank_id=BLANK, eos_id=eos), (1, 2, 2))
    np.testing.assert_allclose(long, short, rtol=1e-5)
    assert np.all(short[:, BLANK] == -np.inf)


def test_bad_ids_are_named():
    with pytest.raises(ValueError, match="eos_id"):
        ctc_prefix_scorer(jnp.zeros((1, 3, VOCAB)), jnp.array([3]), blank_id=0, eos_id=VOCAB)
