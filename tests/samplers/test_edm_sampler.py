import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.samplers import edm_evaluations, probability_flow_step, sample_edm

from tests import gaussian_flow

MEAN, STD, SIGMA_MAX = 1.5, 0.5, 80.0


def gaussian_denoiser(x, sigma, cond):
    """The exact denoiser of N(MEAN, STD^2) data: E[y | y + sigma n = x]."""
    s = sigma.reshape(sigma.shape + (1,) * (x.ndim - 1))
    return MEAN + (x - MEAN) * STD**2 / (STD**2 + s**2)


def exact_endpoint(key, shape):
    """The probability-flow ODE maps x(sigma) - MEAN in proportion to sqrt(STD^2 + sigma^2)."""
    start = SIGMA_MAX * jax.random.normal(key, shape)
    return MEAN + (start - MEAN) * STD / np.sqrt(STD**2 + SIGMA_MAX**2)


@pytest.mark.parametrize("method, order", [("euler", 1), ("heun", 2)])
def test_converges_to_the_exact_ode_solution_at_the_method_order(method, order):
    key, shape = jax.random.key(3), (64, 4)
    exact = exact_endpoint(key, shape)
    errors = []
    for steps in (16, 32, 64):
        x = jax.jit(lambda k: sample_edm(gaussian_denoiser, k, shape, steps=steps, method=method))(key)
        errors.append(float(jnp.max(jnp.abs(x - exact))))
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert all(r > 2 ** order * 0.7 for r in ratios), (errors, ratios)
    assert errors[-1] < (0.1 if method == "euler" else 0.01)


def test_one_step_is_the_denoiser_at_sigma_max():
    key, shape = jax.random.key(0), (5, 3)
    x = sample_edm(gaussian_denoiser, key, shape, steps=1, method="euler")
    start = SIGMA_MAX * jax.random.normal(key, shape)
    np.testing.assert_allclose(x, gaussian_denoiser(start, jnp.full((5,), SIGMA_MAX), None), rtol=1e-5)


def test_evaluations_and_bad_settings():
    assert edm_evaluations("euler", 10) == 10 and edm_evaluations("heun", 18) == 35
    with pytest.raises(ValueError, match="unknown EDM method"):
        edm_evaluations("rk4", 10)
    with pytest.raises(ValueError, match="steps"):
        sample_edm(gaussian_denoiser, jax.random.key(0), (2, 2), steps=0)


def test_noise_centred_on_a_mean_is_carried_to_the_data_by_the_same_ode():
    # x_sigma = x0 + sigma (z + m): starting from sigma_max (z + m) and the exact denoiser, the samples are the data's.
    x = sample_edm(gaussian_flow.denoiser(mean=2.0), jax.random.key(0), (20000, 2), steps=30, method="heun",
                   noise_mean=2.0)
    np.testing.assert_allclose(float(jnp.std(x)), gaussian_flow.SD, rtol=0.03)
    np.testing.assert_allclose(float(jnp.mean(x)), 0.0, atol=0.03)


def test_probability_flow_step_has_the_local_error_order_of_its_method():
    # One step's error against the exact trajectory shrinks as h^2 (Euler) and h^3 (Heun).
    x = jax.random.normal(jax.random.key(1), (6, 3))
    sigma = jnp.full(6, 2.0)

    def error(method, h):
        following = sigma - h
        step = probability_flow_step(gaussian_flow.denoiser(), x, sigma, following, method=method)
        return float(jnp.max(jnp.abs(step - gaussian_flow.trajectory()(x, sigma, following))))

    for method, order in (("euler", 2), ("heun", 3)):
        ratio = error(method, 0.2) / error(method, 0.1)
        assert 2 ** (order - 0.4) < ratio < 2 ** (order + 0.4), (method, ratio)
