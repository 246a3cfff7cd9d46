import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from jaxspeech.eval import sliced_wasserstein


def test_one_dimension_is_the_wasserstein_distance_of_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 1)), rng.gamma(2.0, size=(300, 1))
    got = sliced_wasserstein(jnp.asarray(x), jnp.asarray(y), jax.random.key(0), projections=4, p=1)
    np.testing.assert_allclose(float(got), wasserstein_distance(x[:, 0], y[:, 0]), rtol=0.02)


def test_a_shift_is_its_mean_projected_length_and_a_set_is_at_zero_from_itself():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2000, 2)), jnp.float32)
    assert float(sliced_wasserstein(x, x, jax.random.key(0))) == 0.0
    shift = jnp.array([3.0, 4.0])  # |<u, shift>| for u uniform on the circle: E[cos^2] = 1/2 -> SW_2 = 5 / sqrt 2
    got = sliced_wasserstein(x, x + shift, jax.random.key(1), projections=4096)
    np.testing.assert_allclose(float(got), 5.0 / np.sqrt(2.0), rtol=0.02)
    with pytest.raises(ValueError, match="same dimension"):
        sliced_wasserstein(x, jnp.zeros((3, 3)), jax.random.key(0))
