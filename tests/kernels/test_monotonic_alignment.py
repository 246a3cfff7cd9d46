import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from jaxspeech.kernels.monotonic_alignment import (
    durations_from_path,
    gaussian_log_likelihood,
    monotonic_alignment,
    pallas_alignment,
    reference,
    resolve_impl,
    scan_alignment,
)

# Every implementation against the independent checks; "pallas" is compiled on a GPU and runs in
# the Pallas interpreter elsewhere.
IMPLS = ["reference", "xla", "pallas"]
INTERPRET = jax.default_backend() != "gpu"


def align(impl, value, text_mask, mel_mask):
    args = (jnp.asarray(value), jnp.asarray(text_mask), jnp.asarray(mel_mask))
    if impl == "reference":
        return np.asarray(reference(*args))
    return np.asarray(monotonic_alignment(*args, impl=impl, interpret=INTERPRET and impl == "pallas"))


def brute_force_path(value):
    """Best alignment of value [n_text, n_mel] among all C(n_mel - 1, n_text - 1) of them."""
    n_text, n_mel = value.shape
    best, best_path = -np.inf, None
    for cuts in itertools.combinations(range(1, n_mel), n_text - 1):
        bounds = (0, *cuts, n_mel)
        path = np.zeros((n_text, n_mel))
        for token in range(n_text):
            path[token, bounds[token] : bounds[token + 1]] = 1
        score = np.sum(path * value)
        if score > best:
            best, best_path = score, path
    return best_path


def cython_port(value, n_text, n_mel, max_neg_val=-1e9):
    """Line-by-line numpy port of Matcha's Cython maximum_path_each (float32, in place)."""
    value = np.array(value[:n_text, :n_mel], np.float32)
    path = np.zeros(value.shape, np.float32)
    for y in range(n_mel):
        for x in range(max(0, n_text + y - n_mel), min(n_text, y + 1)):
            v_cur = np.float32(max_neg_val) if x == y else value[x, y - 1]
            if x == 0:
                v_prev = np.float32(0.0) if y == 0 else np.float32(max_neg_val)
            else:
                v_prev = value[x - 1, y - 1]
            value[x, y] += max(v_cur, v_prev)
    index = n_text - 1
    for y in range(n_mel - 1, -1, -1):
        path[index, y] = 1
        if index != 0 and (index == y or value[index, y - 1] < value[index - 1, y - 1]):
            index -= 1
    return path


def padded_batch(rng, lengths, n_text, n_mel, integer=False):
    batch = len(lengths)
    if integer:  # many exact ties, to check tie-breaking
        value = rng.integers(-2, 2, size=(batch, n_text, n_mel)).astype(np.float32)
    else:
        value = rng.normal(size=(batch, n_text, n_mel)).astype(np.float32)
    text_len = np.array([t for t, _ in lengths])
    mel_len = np.array([m for _, m in lengths])
    text_mask = np.arange(n_text)[None] < text_len[:, None]
    mel_mask = np.arange(n_mel)[None] < mel_len[:, None]
    garbage = ~(text_mask[:, :, None] & mel_mask[:, None, :])
    value[garbage] = np.where(rng.random(garbage.sum()) < 0.5, np.nan, 1e9)  # padding is never trusted
    return value, text_mask, mel_mask


@pytest.mark.parametrize("impl", IMPLS)
def test_matches_brute_force_on_padded_batches(impl):
    rng = np.random.default_rng(0)
    lengths = [(1, 1), (1, 6), (2, 2), (3, 5), (4, 7), (2, 7), (7, 7), (3, 4)]
    for trial in range(3):
        value, text_mask, mel_mask = padded_batch(rng, lengths, 7, 7)
        path = align(impl, value, text_mask, mel_mask)
        for b, (n_text, n_mel) in enumerate(lengths):
            np.testing.assert_array_equal(path[b, :n_text, :n_mel], brute_force_path(value[b, :n_text, :n_mel]))
            assert path[b].sum() == n_mel  # nothing on padding


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("integer", [False, True])
def test_matches_matcha_cython_port(integer, impl):
    rng = np.random.default_rng(1 + integer)
    lengths = [(12, 40), (30, 61), (1, 17), (25, 25), (9, 33)]
    value, text_mask, mel_mask = padded_batch(rng, lengths, 30, 61, integer=integer)
    path = align(impl, value, text_mask, mel_mask)
    for b, (n_text, n_mel) in enumerate(lengths):
        expected = cython_port(value[b], n_text, n_mel)
        np.testing.assert_array_equal(path[b, :n_text, :n_mel], expected)
        assert np.all(path[b, n_text:] == 0) and np.all(path[b, :, n_mel:] == 0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("all_impossible", [False, True])
def test_path_properties_and_durations(all_impossible, impl):
    rng = np.random.default_rng(3)
    lengths = [(5, 20), (8, 9), (3, 3)]
    value, text_mask, mel_mask = padded_batch(rng, lengths, 8, 20)
    if all_impossible:  # every score ties at -inf: the path must still be a valid alignment
        value[text_mask[:, :, None] & mel_mask[:, None, :]] = -np.inf
    path = jnp.asarray(align(impl, value, text_mask, mel_mask))
    durations = np.asarray(durations_from_path(path))
    assert durations.dtype == np.int32
    for b, (n_text, n_mel) in enumerate(lengths):
        p = np.asarray(path[b, :n_text, :n_mel])
        assert set(np.unique(p)) <= {0.0, 1.0}
        np.testing.assert_array_equal(p.sum(0), 1)  # each frame to exactly one token
        assert np.all(durations[b, :n_text] >= 1) and durations[b].sum() == n_mel
        token_of_frame = p.argmax(0)
        assert token_of_frame[0] == 0 and token_of_frame[-1] == n_text - 1
        assert np.all(np.diff(token_of_frame) >= 0) and np.all(np.diff(token_of_frame) <= 1)


def test_jit_composes_and_path_has_no_gradient():
    rng = np.random.default_rng(4)
    value, text_mask, mel_mask = padded_batch(rng, [(3, 6), (2, 4)], 3, 6)
    value = np.nan_to_num(value, nan=0.0)
    direct = reference(jnp.asarray(value), jnp.asarray(text_mask), jnp.asarray(mel_mask))
    jitted = jax.jit(monotonic_alignment)(jnp.asarray(value), jnp.asarray(text_mask), jnp.asarray(mel_mask))
    np.testing.assert_array_equal(direct, jitted)
    text_mask, mel_mask = jnp.asarray(text_mask), jnp.asarray(mel_mask)
    grad = jax.grad(lambda v: jnp.sum(reference(v, text_mask, mel_mask) * v))(jnp.asarray(value))
    # d/dv sum(path(v) * v) = path: the path itself is treated as a constant
    np.testing.assert_array_equal(grad, direct)


def test_gaussian_log_likelihood_matches_scipy():
    rng = np.random.default_rng(5)
    means = rng.normal(size=(2, 4, 3)).astype(np.float32)
    mel = rng.normal(size=(2, 6, 3)).astype(np.float32)
    got = np.asarray(gaussian_log_likelihood(jnp.asarray(means), jnp.asarray(mel)))
    expected = norm.logpdf(mel[:, None, :, :], loc=means[:, :, None, :]).sum(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # The alignment of frames drawn around the means recovers the true durations.
    true_durations = np.array([3, 1, 4, 2])
    centres = np.array([[0.0, 0, 0], [6, 0, 0], [0, 6, 0], [0, 0, 6]], np.float32)
    frames = np.repeat(centres, true_durations, axis=0) + 0.1 * rng.normal(size=(10, 3)).astype(np.float32)
    ll = gaussian_log_likelihood(jnp.asarray(centres[None]), jnp.asarray(frames[None]))
    path = monotonic_alignment(ll, jnp.ones((1, 4), bool), jnp.ones((1, 10), bool))
    np.testing.assert_array_equal(durations_from_path(path)[0], true_durations)
    assert math.isclose(float(ll[0, 0, 0]), float(norm.logpdf(frames[0]).sum()), rel_tol=1e-5)


def test_bad_inputs():
    value = jnp.zeros((2, 3, 4))
    ok_text, ok_mel = jnp.ones((2, 3), bool), jnp.ones((2, 4), bool)
    with pytest.raises(ValueError, match="tokens <= frames"):
        monotonic_alignment(value, ok_text, jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool))
    with pytest.raises(ValueError, match="tokens <= frames"):
        monotonic_alignment(value, jnp.array([[1, 1, 1], [0, 0, 0]], bool), ok_mel)
    with pytest.raises(ValueError, match="right-padded"):
        monotonic_alignment(value, jnp.array([[1, 0, 1], [1, 1, 1]], bool), ok_mel)
    with pytest.raises(ValueError, match=r"\[B,T_text\]"):
        monotonic_alignment(value, ok_mel, ok_mel)


@pytest.mark.parametrize("n_text, n_mel", [(16, 16), (5, 23), (1, 9)])
def test_kernel_and_scan_equal_reference_bitwise(n_text, n_mel):
    """Random padded batches with many exact ties (small integers), NaN/inf/1e9 in the padding,
    rows with tokens == frames, a single token, and a full row; n_text = 16 is a kernel width
    with no token padding. Both fast paths must reproduce the reference path exactly."""
    rng = np.random.default_rng(n_text * 100 + n_mel)
    lengths = [(n_text, n_mel), (n_text, n_text), (1, n_mel), (1, 1), (max(1, n_text // 2), n_mel - 1)]
    for integer in (True, False):
        value, text_mask, mel_mask = padded_batch(rng, lengths, n_text, n_mel, integer=integer)
        value[~(text_mask[:, :, None] & mel_mask[:, None, :]) & (rng.random(value.shape) < 0.2)] = -np.inf
        args = (jnp.asarray(value), jnp.asarray(text_mask), jnp.asarray(mel_mask))
        expected = np.asarray(reference(*args))
        np.testing.assert_array_equal(scan_alignment(*args), expected)
        np.testing.assert_array_equal(pallas_alignment(*args, interpret=INTERPRET), expected)


def test_kernel_composes_with_jit_and_has_no_gradient():
    rng = np.random.default_rng(6)
    value, text_mask, mel_mask = padded_batch(rng, [(3, 6), (2, 4)], 3, 6)
    value = jnp.asarray(np.nan_to_num(value, nan=0.0))  # NaN padding would give NaN * 0 gradients
    text_mask, mel_mask = jnp.asarray(text_mask), jnp.asarray(mel_mask)
    expected = reference(value, text_mask, mel_mask)

    def score(v):
        return jnp.sum(monotonic_alignment(v, text_mask, mel_mask, impl="pallas", interpret=INTERPRET) * v)

    np.testing.assert_array_equal(jax.grad(jax.jit(score))(value), expected)


def test_dispatch(monkeypatch):
    assert resolve_impl("xla") == "xla" and resolve_impl("pallas", interpret=True) == "pallas"
    with pytest.raises(ValueError, match="impl must be one of"):
        resolve_impl("cuda")
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert resolve_impl("auto") == "xla"
    with pytest.raises(ValueError, match="GPUs only.*interpret=True"):
        monotonic_alignment(jnp.zeros((1, 2, 3)), jnp.ones((1, 2), bool), jnp.ones((1, 3), bool), impl="pallas")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert resolve_impl("auto") == "pallas" and resolve_impl("pallas") == "pallas"


def test_kernel_lowers_to_triton_for_cuda(monkeypatch):
    """Without a GPU, lowering for the "cuda" platform still runs the Pallas Triton lowering
    (dynamic loop bounds, shifted and scalar loads, int8 stores, barriers); an unsupported
    primitive or shape would fail here. PTX compilation and execution need a GPU."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    args = (jnp.zeros((2, 37, 90)), jnp.ones((2, 37), bool), jnp.ones((2, 90), bool))
    lowered = jax.jit(pallas_alignment).trace(*args).lower(lowering_platforms=("cuda",))
    assert lowered.as_text().count("__gpu$xla.gpu.triton") == 1
