import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.losses import edm_loss, edm_weight
from jaxspeech.noise_levels import edm_preconditioning, preconditioned

SD = 0.5


def _gaussian_data(n=4096, dim=8):
    return SD * jax.random.normal(jax.random.key(0), (n, dim))


def test_weight_is_one_over_c_out_squared():
    sigma = jnp.geomspace(0.002, 80.0, 9)
    np.testing.assert_allclose(edm_weight(sigma) * edm_preconditioning(sigma).c_out ** 2, 1.0, rtol=1e-5)


def test_the_optimal_denoiser_of_gaussian_data_has_unit_weighted_loss_at_every_level():
    # For y ~ N(0, sd^2 I) the optimal denoiser is c_skip x (a raw network of zero); its expected
    # EDM-weighted error is lambda * sigma^2 sd^2 / (sigma^2 + sd^2) = 1 at every sigma.
    zero = preconditioned(lambda x, c_noise, cond: jnp.zeros_like(x), edm_preconditioning)
    x1 = _gaussian_data()
    for sigma in (0.01, 0.5, 20.0):
        loss, metrics = edm_loss(zero, x1, jax.random.key(1), sigma=jnp.full((x1.shape[0],), sigma))
        assert float(loss) == pytest.approx(1.0, abs=0.03)
    loss, metrics = edm_loss(zero, x1, jax.random.key(2))  # lognormal levels
    assert float(loss) == pytest.approx(1.0, abs=0.03)
    assert float(metrics["sigma_median"]) == pytest.approx(np.exp(-1.2), rel=0.1)
    # Any other raw output is worse: a constant 0.3 adds 0.3^2 to the unit-weighted target error.
    off = preconditioned(lambda x, c_noise, cond: jnp.full_like(x, 0.3), edm_preconditioning)
    loss_off, _ = edm_loss(off, x1, jax.random.key(2))
    assert float(loss_off) == pytest.approx(1.09, abs=0.03)


def test_masked_entries_do_not_count():
    x1 = jnp.ones((2, 5, 3))
    mask = jnp.array([[True] * 5, [True, True, False, False, False]])
    denoiser = lambda x, sigma, cond: jnp.where(jnp.arange(5)[None, :, None] >= 2, 100.0, jnp.ones_like(x))
    loss, metrics = edm_loss(denoiser, x1, jax.random.key(0), mask=mask, sigma=jnp.ones(2))
    # only sample 0's frames 2..4 are wrong: 3 frames x 3 elements of error 99^2, weight 1.25/0.25 = 5
    assert float(metrics["denoising_mse"]) == pytest.approx(9 * 99.0**2 / (7 * 3), rel=1e-6)
    assert float(loss) == pytest.approx(5 * 9 * 99.0**2 / (7 * 3), rel=1e-6)
    with pytest.raises(ValueError, match="prefix"):
        edm_loss(denoiser, x1, jax.random.key(0), mask=jnp.ones((3,), bool))


def test_trains_a_denoiser_under_jit_and_grad():
    x1 = _gaussian_data(256, 2) + 1.0  # mean 1: the zero raw network is no longer optimal

    def raw(params, x, c_noise, cond):
        return x @ params["w"] + params["b"] * jnp.cos(c_noise)[:, None]

    def loss_fn(params, key):
        denoiser = preconditioned(functools.partial(raw, params), edm_preconditioning)
        return edm_loss(denoiser, x1, key)[0]

    params = {"w": jnp.zeros((2, 2)), "b": jnp.zeros((2,))}
    grad = jax.jit(jax.grad(loss_fn))
    first = float(loss_fn(params, jax.random.key(9)))
    for i in range(200):
        params = jax.tree.map(lambda p, g: p - 0.05 * g, params, grad(params, jax.random.key(i)))
    assert float(loss_fn(params, jax.random.key(9))) < 0.8 * first
