import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from jaxspeech.losses.duration import duration_loss, prior_loss


def test_duration_loss_matches_matcha_formula():
    rng = np.random.default_rng(0)
    lengths = np.array([5, 2, 4])
    mask = np.arange(5)[None] < lengths[:, None]
    durations = rng.integers(1, 9, size=(3, 5))
    logw = rng.normal(size=(3, 5)).astype(np.float32)
    logw[~mask] = 1e4  # padding must not count
    expected = sum(
        (logw[b, i] - math.log(1e-8 + durations[b, i])) ** 2 for b in range(3) for i in range(lengths[b])
    ) / lengths.sum()
    got = duration_loss(jnp.asarray(logw), jnp.asarray(durations), jnp.asarray(mask))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_duration_loss_is_zero_at_the_log_durations_and_has_the_right_gradient():
    durations = jnp.array([[3, 1, 7, 0]])
    mask = jnp.array([[True, True, True, False]])
    logw = jnp.log(1e-8 + durations.astype(jnp.float32))
    assert float(duration_loss(logw, durations, mask)) < 1e-10
    grad = jax.grad(duration_loss)(logw + 0.5, durations, mask)
    np.testing.assert_allclose(grad, [[1 / 3, 1 / 3, 1 / 3, 0.0]], rtol=1e-5)  # 2 * 0.5 / 3 tokens


def test_prior_loss_is_mean_gaussian_nll():
    rng = np.random.default_rng(1)
    mel = rng.normal(size=(2, 6, 3)).astype(np.float32)
    means = rng.normal(size=(2, 6, 3)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]], bool)
    mel[~mask] = np.nan
    expected = -np.mean(norm.logpdf(mel[mask], loc=means[mask]))
    got = prior_loss(jnp.asarray(mel), jnp.asarray(means), jnp.asarray(mask))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    perfect = prior_loss(jnp.asarray(means), jnp.asarray(means), jnp.asarray(mask))
    np.testing.assert_allclose(float(perfect), 0.5 * math.log(2 * math.pi), rtol=1e-6)


def test_shape_errors():
    with pytest.raises(AssertionError):
        duration_loss(jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.ones((2, 3), bool))
    with pytest.raises(AssertionError):
        prior_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 5)), jnp.ones((2, 3), bool))
