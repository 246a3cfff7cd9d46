import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from jaxspeech.losses import (
    ect_loss,
    ect_r_of_t,
    ict_discretization,
    ict_loss,
    lognormal_index_probabilities,
    pseudo_huber,
)
from jaxspeech.noise_levels import consistency_preconditioning, karras_sigmas, preconditioned


@pytest.mark.parametrize("step, expected", [(0, 11), (49999, 11), (50000, 21), (100000, 41), (349999, 641),
                                            (350000, 1281), (399999, 1281), (10**9, 1281)])
def test_curriculum_doubles_from_s0_to_s1(step, expected):
    # K = 400000, s0 = 10, s1 = 1280: K' = floor(400000 / (log2 128 + 1)) = 50000.
    assert int(ict_discretization(step, 400000)) == expected


def test_curriculum_under_jit_never_recompiles():
    traces = []

    def loss_at(step, key):
        traces.append(1)
        denoiser = lambda x, sigma, cond: x * 0.5
        return ict_loss(denoiser, jnp.ones((4, 3)), key, step=step, total_steps=80, s0=10, s1=40)

    jitted = jax.jit(loss_at)
    sizes = [int(jitted(jnp.int32(k), jax.random.key(k))[1]["grid_size"]) for k in (0, 30, 60, 79)]
    assert sizes == [11, 21, 41, 41] and len(traces) == 1


def test_index_probabilities_are_the_lognormal_mass_between_levels():
    num = 21
    sigmas = karras_sigmas(num, size=41)
    p = np.asarray(lognormal_index_probabilities(sigmas, num))
    s = np.asarray(karras_sigmas(num), np.float64)
    cdf = erf((np.log(s) + 1.1) / (math.sqrt(2) * 2.0))
    expected = (cdf[1:] - cdf[:-1]) / (cdf[-1] - cdf[0])
    np.testing.assert_allclose(p[:num - 1], expected, rtol=1e-4, atol=1e-7)
    assert np.all(p[num - 1:] == 0) and p.sum() == pytest.approx(1.0, abs=1e-6)


def test_pseudo_huber_is_l2_for_small_c_and_quadratic_for_small_differences():
    d = jax.random.normal(jax.random.key(0), (3, 4, 5))
    norms = np.linalg.norm(np.asarray(d).reshape(3, -1), axis=1)
    np.testing.assert_allclose(pseudo_huber(d, 0.0), norms, rtol=1e-6)
    tiny = 1e-4 * d
    np.testing.assert_allclose(pseudo_huber(tiny, 1.0), (1e-4 * norms) ** 2 / 2, rtol=1e-3)


def _elementwise_denoiser(theta):
    return preconditioned(lambda x_in, c_noise, cond: theta * x_in, consistency_preconditioning)


def _reference_ict(theta, x1, key, stop_gradient):
    """iCT written out once more (L2 distance, c = 0), for one grid of 11 levels at step 0."""
    d = _elementwise_denoiser(theta)
    k_index, k_noise = jax.random.split(key)
    sigmas = karras_sigmas(11, size=1281)
    index = jax.random.choice(k_index, 1280, x1.shape[:1], p=lognormal_index_probabilities(sigmas, 11))
    z = jax.random.normal(k_noise, x1.shape)
    s, s_next = sigmas[index], sigmas[index + 1]
    target = d(x1 + s[:, None] * z, s, None)
    target = jax.lax.stop_gradient(target) if stop_gradient else target
    return jnp.mean(jnp.linalg.norm(d(x1 + s_next[:, None] * z, s_next, None) - target, axis=1) / (s_next - s))


def test_matches_a_written_out_ict_and_the_target_is_under_stop_gradient():
    x1 = jax.random.normal(jax.random.key(1), (8, 6))
    key, theta = jax.random.key(2), jnp.float32(0.3)
    loss = lambda t: ict_loss(_elementwise_denoiser(t), x1, key, step=0, total_steps=100, huber_scale=0.0)[0]
    assert float(loss(theta)) == pytest.approx(float(_reference_ict(theta, x1, key, True)), rel=1e-5)
    grad = float(jax.grad(loss)(theta))
    assert grad == pytest.approx(float(jax.grad(_reference_ict)(theta, x1, key, True)), rel=1e-4)
    through_both = float(jax.grad(_reference_ict)(theta, x1, key, False))
    assert abs(through_both - grad) > 1e-2 * abs(grad)


def test_masked_elements_do_not_count():
    x1 = jax.random.normal(jax.random.key(3), (2, 6, 3))
    mask = jnp.array([[True] * 6, [True] * 3 + [False] * 3])
    changed = x1.at[1, 3:].multiply(1000.0)
    loss = lambda x: ict_loss(_elementwise_denoiser(0.3), x, jax.random.key(4), step=0, total_steps=100,
                              mask=mask)[0]
    assert float(loss(changed)) == pytest.approx(float(loss(x1)), rel=1e-6)


def test_bad_curriculum_settings_name_the_field():
    with pytest.raises(ValueError, match="s1"):
        ict_discretization(0, 1000, s0=10, s1=5)
    with pytest.raises(ValueError, match="total_steps"):
        ict_discretization(0, 4, s0=10, s1=1280)


def test_ect_mapping_is_the_closed_form_and_tends_to_t_with_the_stage():
    t = jnp.array([0.01, 0.5, 2.0, 20.0])
    for stage in (0, 3):
        expected = np.maximum(np.asarray(t) * (1 - 2.0 ** -(stage + 1) * (1 + 8 / (1 + np.exp(np.asarray(t))))), 0)
        np.testing.assert_allclose(ect_r_of_t(t, stage), expected, rtol=1e-5)
    assert float(ect_r_of_t(jnp.array(0.01), 0)) == 0.0  # small t: r clamps to 0, the denoising loss
    np.testing.assert_allclose(ect_r_of_t(t, 30), t, rtol=1e-6)
    with pytest.raises(ValueError, match="q must be"):
        ect_r_of_t(t, 0, q=1.0)


def _reference_ect(theta, x1, key, step, steps_per_stage, stop_gradient):
    """ECT written out once more (L2 distance, weight 1 / (t - r), locuslab/ect's)."""
    d = _elementwise_denoiser(theta)
    k_t, k_noise = jax.random.split(key)
    t = jnp.exp(-1.1 + 2.0 * jax.random.normal(k_t, x1.shape[:1]))
    decay = 2.0 ** -(step // steps_per_stage + 1)
    r = jnp.maximum(t * (1 - decay * (1 + 8 * jax.nn.sigmoid(-t))), 0)
    z = jax.random.normal(k_noise, x1.shape)
    target = jnp.where(r[:, None] > 0, d(x1 + r[:, None] * z, jnp.maximum(r, 1e-12), None), x1)
    target = jax.lax.stop_gradient(target) if stop_gradient else target
    weight = 1.0 / (t - r)
    return jnp.mean(jnp.linalg.norm(d(x1 + t[:, None] * z, t, None) - target, axis=1) * weight)


@pytest.mark.parametrize("step", [0, 700])
def test_ect_matches_a_written_out_ect_and_the_target_is_under_stop_gradient(step):
    x1 = jax.random.normal(jax.random.key(5), (16, 6))
    key, theta = jax.random.key(6), jnp.float32(0.3)
    loss = lambda t: ect_loss(_elementwise_denoiser(t), x1, key, step=step, steps_per_stage=200)[0]
    assert float(loss(theta)) == pytest.approx(float(_reference_ect(theta, x1, key, step, 200, True)), rel=1e-5)
    grad = float(jax.grad(loss)(theta))
    assert grad == pytest.approx(float(jax.grad(_reference_ect)(theta, x1, key, step, 200, True)), rel=1e-4)
    through_both = float(jax.grad(_reference_ect)(theta, x1, key, step, 200, False))
    assert abs(through_both - grad) > 1e-3 * abs(grad)


def test_ect_masked_elements_do_not_count():
    x1 = jax.random.normal(jax.random.key(3), (2, 6, 3))
    mask = jnp.array([[True] * 6, [True] * 3 + [False] * 3])
    changed = x1.at[1, 3:].multiply(1000.0)
    loss = lambda x: ect_loss(_elementwise_denoiser(0.3), x, jax.random.key(4), step=500, steps_per_stage=100,
                              mask=mask)[0]
    assert float(loss(changed)) == pytest.approx(float(loss(x1)), rel=1e-6)


def test_ict_ablations_squared_l2_and_uniform_indices():
    # student - target = (sigma_{i+1} - sigma_i) per element: squared L2 over d elements, weighted by
    # 1 / (sigma_{i+1} - sigma_i), is d (sigma_{i+1} - sigma_i), whose mean under uniform indices over a grid
    # of N levels telescopes to d (sigma_max - sigma_min) / (N - 1).
    denoiser = lambda x, sigma, cond: jnp.broadcast_to(sigma[:, None], x.shape)
    x1 = jnp.zeros((40000, 3))
    loss, metrics = ict_loss(denoiser, x1, jax.random.key(0), step=0, total_steps=100, huber_scale=None,
                             lognormal_indices=False)
    assert int(metrics["grid_size"]) == 11
    np.testing.assert_allclose(float(loss), 3 * (80.0 - 0.002) / 10, rtol=0.03)
    lognormal, _ = ict_loss(denoiser, x1, jax.random.key(0), step=0, total_steps=100, huber_scale=None)
    assert float(lognormal) < 0.5 * float(loss)  # lognormal indices favour the small, closely spaced levels
