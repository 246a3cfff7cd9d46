import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.noise_levels import (
    check_sigma_grid,
    consistency_preconditioning,
    edm_preconditioning,
    karras_sigmas,
    preconditioned,
)


def test_karras_grid_is_the_closed_form_and_increases_from_sigma_min_to_sigma_max():
    sigmas = np.asarray(karras_sigmas(18))
    i = np.arange(18)
    expected = (0.002 ** (1 / 7) + i / 17 * (80 ** (1 / 7) - 0.002 ** (1 / 7))) ** 7
    np.testing.assert_allclose(sigmas, expected, rtol=1e-5)
    assert sigmas[0] == pytest.approx(0.002, rel=1e-5) and sigmas[-1] == pytest.approx(80.0, rel=1e-5)
    assert np.all(np.diff(sigmas) > 0)


def test_a_traced_grid_size_gives_the_same_grid_padded_with_sigma_max():
    grid = jax.jit(lambda n: karras_sigmas(n, size=32))
    for n in (11, 21):
        padded = np.asarray(grid(n))
        np.testing.assert_allclose(padded[:n], karras_sigmas(n), rtol=1e-5)
        np.testing.assert_allclose(padded[n:], 80.0, rtol=1e-5)


@pytest.mark.parametrize("bad", [[1.0, 0.5, 2.0], [0.0, 1.0], [1.0, 1.0], [[1.0, 2.0]]])
def test_a_grid_that_does_not_increase_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="my_grid"):
        check_sigma_grid(jnp.asarray(bad), "my_grid")


def test_bad_grid_settings_fail_loudly():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        karras_sigmas(10, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="num"):
        karras_sigmas(1)


def test_consistency_parameterisation_meets_the_boundary_condition_and_tends_to_edm():
    c = consistency_preconditioning(jnp.array([0.002]))
    assert float(c.c_skip[0]) == pytest.approx(1.0) and float(c.c_out[0]) == pytest.approx(0.0, abs=1e-9)
    high, edm = consistency_preconditioning(jnp.array([80.0])), edm_preconditioning(jnp.array([80.0]))
    for a, b in zip(high, edm):
        np.testing.assert_allclose(a, b, rtol=1e-4)


def test_edm_preconditioning_gives_unit_variance_input_and_target():
    # x = y + sigma n with y ~ N(0, sd^2): c_in x has unit variance, and so has the raw network's
    # ideal target (y - c_skip x) / c_out.
    sigma, sd = jnp.array(3.0), 0.5
    c = edm_preconditioning(sigma, sigma_data=sd)
    assert float(c.c_in**2 * (sd**2 + sigma**2)) == pytest.approx(1.0, rel=1e-6)
    target_variance = ((1 - c.c_skip) ** 2 * sd**2 + c.c_skip**2 * sigma**2) / c.c_out**2
    assert float(target_variance) == pytest.approx(1.0, rel=1e-5)
    assert float(c.c_noise) == pytest.approx(np.log(3.0) / 4)


def test_preconditioned_denoiser_applies_the_coefficients_per_sample():
    x = jnp.arange(6.0).reshape(2, 3)
    sigma = jnp.array([0.5, 4.0])
    raw = lambda x_in, c_noise, cond: x_in * 2.0 + c_noise[:, None] + cond
    denoiser = preconditioned(raw, functools.partial(edm_preconditioning, sigma_data=0.5))
    c = edm_preconditioning(sigma)
    expected = c.c_skip[:, None] * x + c.c_out[:, None] * (2.0 * c.c_in[:, None] * x + c.c_noise[:, None] + 1.0)
    np.testing.assert_allclose(denoiser(x, sigma, 1.0), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="sigma must be"):
        denoiser(x, jnp.array(1.0), 0.0)
