import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.samplers.ode import (
    SWAY_RANGE,
    classifier_free_guidance,
    function_evaluations,
    sample_ode,
    sway_time_grid,
)

# jax.experimental.enable_x64 became jax.enable_x64; float64 keeps rounding out of the slopes.
enable_x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64


def linear_forced_field(x, t, a):
    """dx/dt = a x + sin t, one rate a per batch row."""
    return a[:, None] * x + jnp.sin(t)[:, None]


def exact_solution(x0, a, t=1.0):
    """x(t) for dx/dt = a x + sin t: particular part p sin t + q cos t plus (x0 - q) e^{a t}."""
    q = -1.0 / (1.0 + a * a)
    p = a * q
    return (x0 - q) * np.exp(a * t) + p * np.sin(t) + q * np.cos(t)


@pytest.mark.parametrize("method, order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_convergence_order(method, order):
    """Halving the step divides the error at t = 1 by 2^order: fit the log-log slope."""
    steps = (8, 16, 32, 64) if order == 1 else (4, 8, 16, 32)
    x0 = np.array([[1.0], [-0.5]])
    a = np.array([-1.0, -0.5])
    with enable_x64(True):
        run = jax.jit(
            lambda x, n: sample_ode(linear_forced_field, None, x, cond=jnp.asarray(a), steps=n, method=method),
            static_argnums=1,
        )
        finals = [np.asarray(run(jnp.asarray(x0), n))[:, 0] for n in steps]
    errors = [np.max(np.abs(final - exact_solution(x0[:, 0], a))) for final in finals]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.15, (method, errors, slope)


def affine_transport_field(scale, shift):
    """Velocity of the straight lines x_t = (1 - t) x0 + t (scale x0 + shift), as a field of (x, t)."""

    def field(x, t, cond):
        t = t[:, None]
        x0 = (x - t * shift) / ((1 - t) + t * scale)
        return (scale - 1) * x0 + shift

    return field


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4"])
def test_straight_line_transport_is_followed_exactly(method):
    scale, shift = 2.5, jnp.array([1.0, -3.0, 0.5])
    x0 = jax.random.normal(jax.random.key(0), (4, 3))
    x1, path = sample_ode(
        affine_transport_field(scale, shift), None, x0, steps=3, method=method, sway=True, return_trajectory=True
    )
    np.testing.assert_allclose(x1, scale * x0 + shift, rtol=1e-5, atol=1e-5)
    grid = sway_time_grid(3, -1.0)
    expected = (1 - grid[:, None, None]) * x0 + grid[:, None, None] * (scale * x0 + shift)
    assert path.shape == (4, 4, 3)
    np.testing.assert_allclose(path, expected, rtol=1e-5, atol=1e-5)


def nonlinear_cond_field(x, t, cond):
    return jnp.tanh(x * cond["gain"][:, None]) + t[:, None] * cond["bias"]


def _cond(batch=3, dim=5):
    k1, k2 = jax.random.split(jax.random.key(7))
    return {"gain": jax.random.normal(k1, (batch,)), "bias": jax.random.normal(k2, (batch, dim))}


def test_guidance_scale_zero_equals_conditional_sampling():
    cond = _cond()
    uncond = {"gain": jnp.zeros((1,)), "bias": jnp.zeros((1, 5))}
    options = dict(cond=cond, steps=4, method="heun")
    plain = sample_ode(nonlinear_cond_field, jax.random.key(0), (3, 5), **options)
    guided = sample_ode(nonlinear_cond_field, jax.random.key(0), (3, 5), **options, uncond=uncond, guidance_scale=0.0)
    np.testing.assert_allclose(guided, plain, rtol=1e-6, atol=1e-6)


def test_batched_guidance_equals_two_passes_in_one_call():
    cond = _cond()
    uncond = {"gain": jnp.full((3,), 0.3), "bias": jnp.zeros((3, 5))}
    x = jax.random.normal(jax.random.key(1), (3, 5))
    t = jnp.array([0.1, 0.5, 0.9])
    batch_sizes = []

    def recording_field(x, t, cond):
        batch_sizes.append(x.shape[0])
        return nonlinear_cond_field(x, t, cond)

    w = 2.0
    got = classifier_free_guidance(recording_field, uncond, w)(x, t, cond)
    assert batch_sizes == [6]
    pred, pred_uncond = nonlinear_cond_field(x, t, cond), nonlinear_cond_field(x, t, uncond)
    np.testing.assert_allclose(got, pred + w * (pred - pred_uncond), rtol=1e-6, atol=1e-6)


def test_norm_cap_scales_only_samples_whose_guided_field_outgrows_the_conditional_one():
    cond = _cond()
    uncond = {"gain": jnp.full((3,), 0.3), "bias": jnp.zeros((3, 5))}
    x, t = jax.random.normal(jax.random.key(1), (3, 5)), jnp.array([0.1, 0.5, 0.9])
    plain = np.asarray(classifier_free_guidance(nonlinear_cond_field, uncond, 2.0)(x, t, cond))
    capped = np.asarray(classifier_free_guidance(nonlinear_cond_field, uncond, 2.0, norm_cap=True)(x, t, cond))
    limit = np.linalg.norm(np.asarray(nonlinear_cond_field(x, t, cond)), axis=1)
    norms = np.linalg.norm(plain, axis=1)
    for row in range(3):  # UniVoice: pred * min(1, ||pred_cond|| / ||pred||), per sample
        np.testing.assert_allclose(capped[row], plain[row] * min(1.0, limit[row] / norms[row]), rtol=1e-5)
    assert np.any(norms > limit)  # the cap acts on at least one row here
    np.testing.assert_allclose(np.linalg.norm(capped, axis=1), np.minimum(norms, limit), rtol=1e-5)


def test_guidance_needs_both_arguments_and_matching_structure():
    cond = _cond()
    with pytest.raises(ValueError, match="both uncond and guidance_scale"):
        sample_ode(nonlinear_cond_field, jax.random.key(0), (3, 5), cond=cond, guidance_scale=2.0)
    with pytest.raises(ValueError, match="structure"):
        partial_uncond = {"gain": jnp.zeros(1)}
        sample_ode(nonlinear_cond_field, jax.random.key(0), (3, 5), cond=cond, uncond=partial_uncond, guidance_scale=2)


def test_sway_grid():
    np.testing.assert_allclose(sway_time_grid(8, 0.0), np.linspace(0, 1, 9), atol=1e-7)
    np.testing.assert_allclose(sway_time_grid(8), np.linspace(0, 1, 9), atol=1e-7)
    for s in (-1.0, -0.5, 0.7, SWAY_RANGE[1]):
        grid = np.asarray(sway_time_grid(64, s))
        assert grid[0] == 0.0 and abs(grid[-1] - 1.0) < 1e-6
        assert np.all(np.diff(grid) > -1e-7), s
    t = np.linspace(0, 1, 5)
    np.testing.assert_allclose(sway_time_grid(4, -1.0), t - (np.cos(np.pi * t / 2) - 1 + t), atol=1e-6)
    assert float(sway_time_grid(4, -1.0)[1]) < 0.25  # s < 0 spends more steps near the noise
    with pytest.raises(ValueError, match="monotone"):
        sway_time_grid(4, -1.5)


def test_temperature_scales_start_noise():
    zero_field = lambda x, t, c: jnp.zeros_like(x)  # noqa: E731
    x1, path = sample_ode(zero_field, jax.random.key(3), (2, 7, 4), steps=2, temperature=0.667, return_trajectory=True)
    np.testing.assert_allclose(x1, 0.667 * jax.random.normal(jax.random.key(3), (2, 7, 4)), rtol=1e-6)
    np.testing.assert_allclose(path[0], x1)
    with pytest.raises(ValueError, match="temperature"):
        sample_ode(zero_field, None, x1, temperature=0.5)


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4"])
def test_function_evaluations_are_counted(method):
    calls = []

    def counting_field(x, t, cond):
        jax.debug.callback(lambda: calls.append(1))
        return -x

    steps = 3
    x = sample_ode(counting_field, None, jnp.ones((2, 2)), steps=steps, method=method)
    jax.block_until_ready(x)
    jax.effects_barrier()
    per_step = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}[method]
    assert len(calls) == function_evaluations(method, steps) == per_step * steps
    # On dx/dt = -x one step multiplies x by the method's Taylor polynomial of exp(-h).
    h = 1.0 / steps
    growth = sum((-h) ** k / math.factorial(k) for k in range({"euler": 2, "midpoint": 3, "heun": 3, "rk4": 5}[method]))
    np.testing.assert_allclose(x, growth**steps, rtol=1e-6)


def test_bad_arguments():
    field = lambda x, t, c: x  # noqa: E731
    with pytest.raises(ValueError, match="unknown ODE method"):
        sample_ode(field, jax.random.key(0), (1, 2), method="dopri5")
    with pytest.raises(ValueError, match="steps"):
        sample_ode(field, jax.random.key(0), (1, 2), steps=0)
    with pytest.raises(ValueError, match="key"):
        sample_ode(field, None, (1, 2))
