import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.samplers import sample_consistency, sample_gamma

from tests import gaussian_flow

MEAN, STD, SIGMA_MIN = 1.5, 0.5, 0.002


def gaussian_consistency_fn(x, sigma, cond):
    """The exact consistency function of N(MEAN, STD^2) data: the probability-flow ODE scales x - MEAN
    by sqrt(STD^2 + sigma^2), so f(x, sigma) maps it to its point at sigma_min."""
    s = sigma.reshape(sigma.shape + (1,) * (x.ndim - 1))
    return MEAN + (x - MEAN) * jnp.sqrt((STD**2 + SIGMA_MIN**2) / (STD**2 + s**2))


@pytest.mark.parametrize("sigmas", [(80.0,), (80.0, 0.8), (80.0, 2.0, 0.5, 0.1)])
def test_samples_have_the_data_distribution_at_any_number_of_steps(sigmas):
    x = sample_consistency(gaussian_consistency_fn, jax.random.key(0), (20000, 2), sigmas=sigmas)
    # one step from N(0, 80^2) instead of N(MEAN, STD^2 + 80^2) misses the mean by MEAN * STD / 80
    assert float(jnp.mean(x)) == pytest.approx(MEAN, abs=0.02)
    assert float(jnp.std(x)) == pytest.approx(np.sqrt(STD**2 + SIGMA_MIN**2), rel=0.02)


def test_renoising_uses_sqrt_sigma_squared_minus_sigma_min_squared():
    # An identity "consistency function" exposes the re-noising: the variance grows by sigma^2 - smin^2.
    identity = lambda x, sigma, cond: x
    x = sample_consistency(identity, jax.random.key(1), (40000, 1), sigmas=(1.0, 0.5))
    assert float(jnp.var(x)) == pytest.approx(1.0 + 0.25 - SIGMA_MIN**2, rel=0.03)


@pytest.mark.parametrize("bad, message", [((), "at least one"), ((1.0, 2.0), "decreasing"),
                                          ((100.0,), r"sigma_max\]"), ((80.0, 0.001), r"sigma_min")])
def test_levels_outside_the_grid_or_not_decreasing_fail_clearly(bad, message):
    with pytest.raises(ValueError, match=message):
        sample_consistency(gaussian_consistency_fn, jax.random.key(0), (2, 2), sigmas=bad)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("sigmas", [(80.0,), (80.0, 2.0, 0.3)])
def test_gamma_sampling_with_the_exact_trajectory_reaches_the_data_distribution(gamma, sigmas):
    # Data N(0, SD^2) with noise centred on a mean: the exact G carries every level's noise to the data's.
    mean = 1.5
    x = sample_gamma(gaussian_flow.trajectory(mean), jax.random.key(0), (20000, 2), sigmas=sigmas, gamma=gamma,
                     noise_mean=mean)
    np.testing.assert_allclose(float(jnp.std(x)), gaussian_flow.SD, rtol=0.03)
    np.testing.assert_allclose(float(jnp.mean(x)), 0.0, atol=0.03)


def test_gamma_one_is_consistency_sampling_and_zero_is_deterministic():
    fn = gaussian_flow.consistency()
    trajectory = gaussian_flow.trajectory()
    levels = (80.0, 1.0)
    key = jax.random.key(3)
    consistency = sample_consistency(fn, key, (5, 3), sigmas=levels)
    np.testing.assert_allclose(sample_gamma(trajectory, key, (5, 3), sigmas=levels, gamma=1.0), consistency,
                               rtol=1e-5, atol=1e-6)
    # gamma = 0 never re-noises: the second key is unused and the result is one deterministic jump chain.
    a = sample_gamma(trajectory, key, (5, 3), sigmas=levels, gamma=0.0)
    start = 80.0 * jax.random.normal(jax.random.split(key)[0], (5, 3))
    np.testing.assert_allclose(a, trajectory(start, jnp.full(5, 80.0), jnp.full(5, 0.002), None), rtol=1e-4)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\]"):
        sample_gamma(trajectory, key, (5, 3), gamma=1.5)


def test_temperature_scales_the_start_noise():
    fn = lambda x, sigma, cond: x / 80.0
    cold = sample_consistency(fn, jax.random.key(0), (4, 2), temperature=0.5)
    hot = sample_consistency(fn, jax.random.key(0), (4, 2))
    np.testing.assert_allclose(cold, 0.5 * hot, rtol=1e-6)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sample_consistency(fn, jax.random.key(0), (4, 2), temperature=0.0)
