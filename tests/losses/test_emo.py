import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.losses.emo import emo_distance, emo_loss, token_cross_entropy

# jax.experimental.enable_x64 became jax.enable_x64; float64 keeps rounding out of finite differences.
enable_x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64

B, L, V, D = 2, 5, 7, 4


def _inputs(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(B, L, V)) * 2).astype(dtype)
    targets = rng.integers(0, V, size=(B, L)).astype(np.int32)
    mask = np.ones((B, L), bool)
    mask[1, 3:] = False
    targets[1, 3:] = -100  # padding ids outside the vocabulary must be harmless
    embedding = rng.normal(size=(V, D)).astype(dtype)
    return logits, targets, mask, embedding


def direct_emo(logits, targets, embedding):
    """sum_i q_i C(i, y) with the full [V,V] cost matrix C = 1 - cos, float64 numpy."""
    e = embedding.astype(np.float64)
    e = e / np.linalg.norm(e, axis=-1, keepdims=True)
    cost = 1.0 - e @ e.T
    z = logits.astype(np.float64)
    q = np.exp(z - z.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    y = np.clip(targets, 0, None)
    return np.einsum("blv,blv->bl", q, cost[:, y].transpose(1, 2, 0))


def direct_ce(logits, targets):
    z = logits.astype(np.float64)
    log_q = z - z.max(-1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(-1, keepdims=True))
    y = np.clip(targets, 0, None)
    return -np.take_along_axis(log_q, y[..., None], -1)[..., 0]


def test_emo_distance_matches_the_full_cost_matrix():
    logits, targets, mask, embedding = _inputs()
    got = np.asarray(emo_distance(logits, targets, embedding))
    want = direct_emo(logits, targets, embedding)
    np.testing.assert_allclose(got[mask], want[mask], rtol=1e-5, atol=1e-6)
    ce = np.asarray(token_cross_entropy(logits, targets))
    np.testing.assert_allclose(ce[mask], direct_ce(logits, targets)[mask], rtol=1e-5)
    assert np.all((got[mask] >= -1e-6) & (got[mask] <= 2 + 1e-6))  # cosine cost lies in [0, 2]


@pytest.mark.parametrize("combine", ["mle_scale", "emo_scale"])
def test_loss_values_and_metrics_match_direct_computation(combine):
    logits, targets, mask, embedding = _inputs(1)
    loss, metrics = emo_loss(logits, targets, mask, embedding, combine=combine)
    emo, ce = direct_emo(logits, targets, embedding)[mask], direct_ce(logits, targets)[mask]
    # stop-gradient ratios make the forward value ce (mle_scale) or 2 emo (emo_scale)
    want = ce.mean() if combine == "mle_scale" else 2 * emo.mean()
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["emo"]), emo.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["ce"]), ce.mean(), rtol=1e-5)


def _central_difference(f, x, h=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = h
        grad[index] = (f(x + step) - f(x - step)) / (2 * h)
    return grad


@pytest.mark.parametrize("combine", ["mle_scale", "emo_scale"])
def test_gradient_matches_finite_differences(combine):
    """The combined gradient is a per-token mix of the CE and EMO gradients with frozen ratios.

    Finite differences of the combined value would differentiate through the ratios, so they are
    taken of the two terms separately (numpy, full cost matrix), with the ratios held fixed.
    """
    logits, targets, mask, embedding = _inputs(2, np.float64)
    emo0, ce0 = direct_emo(logits, targets, embedding), direct_ce(logits, targets)
    if combine == "mle_scale":
        ce_weight, emo_weight = 0.5 * np.ones_like(ce0), 0.5 * ce0 / (emo0 + 1e-10)
    else:
        ce_weight, emo_weight = emo0 / (ce0 + 1e-10), np.ones_like(ce0)
    count = mask.sum()

    def reference(z):
        per_token = ce_weight * direct_ce(z, targets) + emo_weight * direct_emo(z, targets, embedding)
        return np.sum(np.where(mask, per_token, 0.0)) / count

    want = _central_difference(reference, logits)
    with enable_x64(True):
        def loss(z, e):
            return emo_loss(z, targets, mask, e, combine=combine)[0]

        got, embedding_grad = jax.grad(loss, argnums=(0, 1))(jnp.asarray(logits), jnp.asarray(embedding))
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-8)
    assert not np.any(np.asarray(got)[~mask])
    np.testing.assert_array_equal(np.asarray(embedding_grad), 0.0)  # the cost is stop-gradient


def test_emo_distance_gradient_matches_finite_differences():
    logits, targets, _, embedding = _inputs(3, np.float64)
    targets = np.clip(targets, 0, None)
    weights = np.random.default_rng(4).normal(size=(B, L))
    want = _central_difference(lambda z: np.sum(weights * direct_emo(z, targets, embedding)), logits)
    with enable_x64(True):
        got = jax.grad(lambda z: jnp.sum(weights * emo_distance(z, targets, jnp.asarray(embedding))))(
            jnp.asarray(logits)
        )
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-8)


def test_emo_is_zero_when_the_prediction_is_one_hot_at_the_target():
    _, targets, mask, embedding = _inputs(5)
    targets = np.clip(targets, 0, None)
    logits = np.where(np.arange(V) == targets[..., None], 200.0, -200.0).astype(np.float32)
    emo = np.asarray(emo_distance(logits, targets, embedding))
    np.testing.assert_allclose(emo, 0.0, atol=1e-6)
    for combine in ("mle_scale", "emo_scale"):
        loss, grads = jax.value_and_grad(
            lambda z: emo_loss(z, targets, mask, embedding, combine=combine)[0]
        )(logits)
        assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(grads)))
        assert abs(float(loss)) < 1e-6


def test_emo_is_zero_for_a_wrong_token_with_the_same_direction():
    """Cost is about meaning (direction), not identity: a parallel embedding costs nothing."""
    embedding = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], np.float32)
    logits = np.array([[[-50.0, 50.0, -50.0]]], np.float32)
    np.testing.assert_allclose(np.asarray(emo_distance(logits, np.array([[0]]), embedding)), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(emo_distance(logits, np.array([[2]]), embedding)), 1.0, atol=1e-6)


def test_padding_does_not_contribute():
    logits, targets, mask, embedding = _inputs(6)
    loss_fn = jax.jit(emo_loss)  # one compile per shape instead of op by op
    loss, metrics = loss_fn(logits, targets, mask, embedding)
    noisy = logits.copy()
    noisy[~mask] = 1e4 * np.random.default_rng(7).normal(size=noisy[~mask].shape)
    other_targets = np.where(mask, targets, 3)
    loss2, metrics2 = loss_fn(noisy, other_targets, mask, embedding)
    assert float(loss) == pytest.approx(float(loss2), rel=1e-6)
    assert float(metrics["emo"]) == pytest.approx(float(metrics2["emo"]), rel=1e-6)
    # the same as the loss over only the valid rows, laid out without padding
    valid = loss_fn(logits[:1], targets[:1], mask[:1], embedding)[0]
    n0, n1 = mask[0].sum(), mask[1].sum()
    part = loss_fn(logits[1:, :n1], targets[1:, :n1], mask[1:, :n1], embedding)[0]
    np.testing.assert_allclose(float(loss), (n0 * float(valid) + n1 * float(part)) / (n0 + n1), rtol=1e-5)
    empty, _ = loss_fn(logits, targets, np.zeros_like(mask), embedding)
    assert float(empty) == 0.0


def test_jit_and_bfloat16_logits():
    logits, targets, mask, embedding = _inputs(8)
    want, _ = emo_loss(logits, targets, mask, embedding)
    loss_fn = jax.jit(emo_loss, static_argnames="combine")
    got, _ = loss_fn(jnp.asarray(logits, jnp.bfloat16), targets, mask, embedding)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), float(want), rtol=3e-2)


def test_bad_input_is_named():
    logits, targets, mask, embedding = _inputs(9)
    with pytest.raises(ValueError, match="rows"):
        emo_loss(logits, targets, mask, embedding[:-1])
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        emo_loss(logits, np.where(mask, V, 0), mask, embedding)
    with pytest.raises(ValueError, match="integer"):
        emo_loss(logits, targets.astype(np.float32), mask, embedding)
    with pytest.raises(ValueError, match="combine"):
        emo_loss(logits, targets, mask, embedding, combine="average")
