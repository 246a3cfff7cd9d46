import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxspeech.losses.ctc import ctc_feasible, ctc_loss, ctc_min_frames


def collapse(path, blank=0):
    out = []
    prev = None
    for s in path:
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return tuple(out)


def brute_force_log_likelihood(log_probs, labels):
    """log sum over all length-T paths that collapse to ``labels``; -inf if none."""
    frames, vocab = log_probs.shape
    total = -np.inf
    for path in itertools.product(range(vocab), repeat=frames):
        if collapse(path) == tuple(labels):
            total = np.logaddexp(total, sum(log_probs[t, s] for t, s in enumerate(path)))
    return total


def _batch(rng, batch, frames, vocab, max_labels):
    logits = rng.normal(size=(batch, frames, vocab)).astype(np.float32) * 2
    logit_len = rng.integers(1, frames + 1, size=batch)
    label_len = rng.integers(0, max_labels + 1, size=batch)
    labels = rng.integers(1, vocab, size=(batch, max_labels)).astype(np.int32)
    label_mask = np.arange(max_labels)[None] < label_len[:, None]
    logit_mask = np.arange(frames)[None] < logit_len[:, None]
    return logits, logit_mask, labels, label_mask


def test_matches_torch_ctc_loss_and_its_gradient():
    rng = np.random.default_rng(0)
    logits, logit_mask, labels, label_mask = _batch(rng, 6, 20, 7, 6)
    logit_mask[0] = True  # full length
    labels[1, :3] = [2, 2, 2]  # repeats need separating blanks
    label_mask[1] = np.arange(6) < 3
    labels[2] = [3, 4, 4, 5, 5, 5]  # padding equal to the last label must be ignored
    label_mask[2] = np.arange(6) < 4
    logit_mask[2] = np.arange(20) < 15
    lengths = logit_mask.sum(1)
    keep = lengths >= np.asarray(ctc_min_frames(labels, label_mask))  # torch gives inf otherwise
    logits, logit_mask, labels, label_mask = logits[keep], logit_mask[keep], labels[keep], label_mask[keep]

    def jax_total(lg):
        return jnp.sum(ctc_loss(lg, logit_mask, labels, label_mask))

    got = ctc_loss(logits, logit_mask, labels, label_mask)
    grad = jax.grad(jax_total)(jnp.asarray(logits))

    t_logits = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    t_log_probs = torch.log_softmax(t_logits, -1).transpose(0, 1)
    expected = torch.nn.functional.ctc_loss(
        t_log_probs,
        torch.tensor(labels, dtype=torch.long),
        torch.tensor(logit_mask.sum(1)),
        torch.tensor(label_mask.sum(1)),
        blank=0,
        reduction="none",
    )
    expected.sum().backward()
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-4, atol=1e-4)
    # Gradients agree at valid frames (torch leaves padded frames at zero, and so does optax).
    np.testing.assert_allclose(grad, t_logits.grad.numpy(), atol=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_sum_over_alignments(seed):
    rng = np.random.default_rng(seed)
    frames, vocab = 5, 3
    logits, logit_mask, labels, label_mask = _batch(rng, 4, frames, vocab, 3)
    logit_mask[0] = True
    got = np.asarray(ctc_loss(logits, logit_mask, labels, label_mask))
    log_probs = logits.astype(np.float64)
    log_probs -= np.logaddexp.reduce(log_probs, axis=-1, keepdims=True)
    feasible = np.asarray(ctc_feasible(logit_mask, labels, label_mask))
    for b in range(4):
        n = logit_mask[b].sum()
        exact = brute_force_log_likelihood(log_probs[b, :n], labels[b, label_mask[b]])
        assert feasible[b] == np.isfinite(exact)
        if feasible[b]:
            np.testing.assert_allclose(got[b], -exact, rtol=1e-4)
        else:
            assert got[b] > 1e3  # optax's finite stand-in for an impossible alignment


def test_feasibility_matches_existence_of_an_alignment():
    frames_max, vocab = 6, 3
    reachable_by_frames = [
        {collapse(p) for p in itertools.product(range(vocab), repeat=f)} for f in range(frames_max + 1)
    ]
    all_labels = [l for n in range(5) for l in itertools.product(range(1, vocab), repeat=n)]
    label_arr = np.zeros((len(all_labels), 4), np.int32)
    label_mask = np.zeros((len(all_labels), 4), bool)
    for i, l in enumerate(all_labels):
        label_arr[i, : len(l)] = l
        label_mask[i, : len(l)] = True
    for frames in range(frames_max + 1):
        logit_mask = np.broadcast_to(np.arange(frames_max) < frames, (len(all_labels), frames_max))
        got = np.asarray(ctc_feasible(logit_mask, label_arr, label_mask))
        expected = np.array([l in reachable_by_frames[frames] for l in all_labels])
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        ctc_min_frames(jnp.array([[1, 1, 2, 2, 2, 9]]), jnp.array([[True] * 5 + [False]])), [8]
    )


def test_rejects_blank_labels_and_left_padding():
    logits = jnp.zeros((1, 4, 3))
    mask = jnp.ones((1, 4), bool)
    with pytest.raises(ValueError, match="blank id 0"):
        ctc_loss(logits, mask, jnp.array([[1, 0]]), jnp.array([[True, True]]))
    with pytest.raises(ValueError, match="right-padded"):
        ctc_loss(logits, mask, jnp.array([[1, 2]]), jnp.array([[False, True]]))
