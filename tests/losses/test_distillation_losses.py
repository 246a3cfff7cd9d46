"""Consistency distillation and CTM losses: zero (up to the teacher's step error) for the exact solution of
a Gaussian's probability-flow ODE, clearly positive for a wrong one, and the masks and metrics they
promise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.losses import cd_loss, ctm_loss, edm_loss
from jaxspeech.losses.ctm import trajectory_function

from tests.gaussian_flow import SD, consistency, denoiser, two_level_denoiser

MEAN = 0.8  # a noise mean, as CoMoSpeech's text prior


def data(key, shape=(256, 6)):
    return SD * jax.random.normal(key, shape)


@pytest.mark.parametrize("solver, tolerance", [("euler", 2e-3), ("heun", 2e-5)])
def test_cd_loss_vanishes_for_the_exact_consistency_function(solver, tolerance):
    x1, key = data(jax.random.key(0)), jax.random.key(1)
    exact = consistency(MEAN)
    kwargs = dict(teacher=denoiser(MEAN), solver=solver, noise_mean=MEAN)
    loss, metrics = cd_loss(exact, x1, key, target=exact, **kwargs)
    wrong = lambda x, sigma, cond: 1.1 * exact(x, sigma, cond)
    wrong_loss, _ = cd_loss(wrong, x1, key, target=exact, **kwargs)
    assert float(loss) < tolerance * float(wrong_loss)
    assert float(metrics["cd_loss"]) == float(loss) and 0.002 <= float(metrics["sigma_median"]) <= 80


def test_cd_loss_gradient_reaches_the_student_only():
    x1, key = data(jax.random.key(2), (8, 3)), jax.random.key(3)

    def loss_of(scales):
        student = lambda x, sigma, cond: scales[0] * x
        target = lambda x, sigma, cond: scales[1] * x
        teacher = lambda x, sigma, cond: scales[2] * x
        return cd_loss(student, x1, key, target=target, teacher=teacher)[0]

    grads = jax.grad(loss_of)(jnp.array([0.9, 1.0, 0.5]))
    assert grads[0] != 0 and grads[1] == 0 and grads[2] == 0


def test_cd_loss_masks_frames_and_can_use_pseudo_huber():
    x1, key = data(jax.random.key(4), (4, 10, 3)), jax.random.key(5)
    mask = jnp.arange(10)[None] < jnp.array([[10], [6], [3], [1]])
    exact, teacher = consistency(), denoiser()
    garbage = jnp.where(mask[..., None], 0.0, 1e6)  # beyond the mask, the student is wildly off
    student = lambda x, sigma, cond: exact(x, sigma, cond) + garbage
    masked, _ = cd_loss(student, x1, key, target=exact, teacher=teacher, mask=mask, solver="heun")
    assert float(masked) < 1e-4
    huber, _ = cd_loss(lambda x, s, c: exact(x, s, c) + 0.1, x1, key, target=exact, teacher=teacher, mask=mask,
                       solver="heun", huber_scale=0.00054)
    # pseudo-Huber of a constant 0.1 offset over n valid elements is about 0.1 sqrt(n) per sample.
    per_sample = [0.1 * np.sqrt(n * 3) for n in (10, 6, 3, 1)]
    np.testing.assert_allclose(float(huber), np.mean(per_sample), rtol=0.02)
    with pytest.raises(ValueError, match="num_levels must be a Python int >= 2"):
        cd_loss(exact, x1, key, target=exact, teacher=teacher, num_levels=1)


def test_trajectory_function_keeps_x_when_it_does_not_jump():
    g = lambda x, t, s, cond: jnp.zeros_like(x)
    jump = trajectory_function(g)
    x, t = jnp.ones((3, 2)), jnp.array([0.5, 2.0, 80.0])
    np.testing.assert_allclose(jump(x, t, t), x)
    np.testing.assert_allclose(jump(x, t, t / 4), x / 4)  # (s/t) x + (1 - s/t) 0


def test_ctm_loss_vanishes_for_the_exact_trajectory_and_denoises_with_g_at_s_equal_t():
    x1, key = data(jax.random.key(6)), jax.random.key(7)
    exact = two_level_denoiser(MEAN)
    kwargs = dict(frozen=exact, target=exact, teacher=denoiser(MEAN), noise_mean=MEAN, solver="heun")
    _, metrics = ctm_loss(exact, x1, key, **kwargs)
    wrong = lambda x, t, s, cond: exact(x, t, s) + 0.05 * (t - s)[:, None]
    _, wrong_metrics = ctm_loss(wrong, x1, key, **kwargs)
    assert float(metrics["ctm_loss"]) < 1e-4 * float(wrong_metrics["ctm_loss"])
    assert 0 < float(metrics["jump_fraction"]) <= 1
    # The denoising term is the EDM loss of g(x, sigma, sigma), the denoiser (CTM's D = g(., t, t)); the
    # offset above vanishes at s = t, so it is the exact denoiser's loss for both.
    want, _ = edm_loss(denoiser(MEAN), x1, jax.random.split(key, 4)[3], noise_mean=MEAN)
    np.testing.assert_allclose(float(metrics["denoising_loss"]), float(want), rtol=1e-5)
    np.testing.assert_allclose(float(wrong_metrics["denoising_loss"]), float(want), rtol=1e-5)
    loss, _ = ctm_loss(exact, x1, key, denoising_weight=0.0, **kwargs)
    np.testing.assert_allclose(float(loss), float(metrics["ctm_loss"]), rtol=1e-6)
    with pytest.raises(ValueError, match="denoising_weight must be >= 0"):
        ctm_loss(exact, x1, key, denoising_weight=-1.0, **kwargs)
    # However far the teacher solves before the target jumps (one step, as CD, or the whole grid), the exact
    # trajectory agrees with itself.
    for steps in (1, 5):
        _, short = ctm_loss(exact, x1, key, teacher_steps=steps, **kwargs)
        assert float(short["ctm_loss"]) < 1e-4 * float(wrong_metrics["ctm_loss"])
    with pytest.raises(ValueError, match="teacher_steps must be a Python int >= 1"):
        ctm_loss(exact, x1, key, teacher_steps=0, **kwargs)


def test_ctm_gradient_flows_through_the_moving_average_map_into_the_student_only():
    x1, key = data(jax.random.key(8), (8, 3)), jax.random.key(9)
    exact = two_level_denoiser()

    def loss_of(scales):
        student = lambda x, t, s, cond: scales[0] * exact(x, t, s)
        frozen = lambda x, t, s, cond: jax.lax.stop_gradient(scales[1]) * exact(x, t, s)
        target = lambda x, t, s, cond: jax.lax.stop_gradient(scales[2]) * exact(x, t, s)
        return ctm_loss(student, x1, key, frozen=frozen, target=target, teacher=denoiser(), denoising_weight=0.0)[0]

    grads = jax.grad(loss_of)(jnp.array([1.2, 1.0, 0.9]))
    assert grads[0] != 0 and grads[1] == 0 and grads[2] == 0


def test_ctm_target_jumps_with_the_current_student_and_maps_to_data_with_the_moving_average():
    """The authors' roles (sony/ctm): the target's jump from u is the student's own (stop-gradient), so a
    moving average that lags behind an exact student leaves the loss near zero (both sides map alike);
    a lagging jump does not."""
    x1, key = data(jax.random.key(10), (8, 3)), jax.random.key(11)
    exact = two_level_denoiser()
    lagging = lambda x, t, s, cond: exact(x, t, s) + 0.05 * (t - s)[:, None]
    common = dict(teacher=denoiser(), denoising_weight=0.0)
    _, lagging_average = ctm_loss(exact, x1, key, frozen=exact, target=lagging, **common)
    _, lagging_jump = ctm_loss(exact, x1, key, frozen=lagging, target=exact, **common)
    assert float(lagging_average["ctm_loss"]) < 0.02 * float(lagging_jump["ctm_loss"])  # Heun's error only


def test_ctm_adaptive_weight_balances_the_gradient_norms_at_the_output_and_is_held_constant():
    """With ``adaptive_weight`` the denoising term is scaled by ||dL_CTM/dg|| / (||dL_DSM/dg|| + 1e-4), each
    gradient taken at g's output (here by an offset added to g outside the loss), and the scale carries no
    gradient: d loss = d L_CTM + w * balance * d L_DSM."""
    x1, key = data(jax.random.key(12), (8, 3)), jax.random.key(13)
    exact, teacher = two_level_denoiser(), denoiser()

    def student(scale, offset=0.0):
        return lambda x, t, s, cond: scale * exact(x, t, s) + 0.05 * (t - s)[:, None] + offset

    def terms(scale, offset=0.0, **options):
        return ctm_loss(student(scale, offset), x1, key, frozen=exact, target=exact, teacher=teacher, **options)

    plain = dict(adaptive_weight=False)
    matching_grad = jax.grad(lambda o: terms(1.1, o, denoising_weight=0.0, **plain)[0])(jnp.zeros_like(x1))
    denoising_grad = jax.grad(lambda o: terms(1.1, o, **plain)[1]["denoising_loss"])(jnp.zeros_like(x1))
    balance = np.linalg.norm(matching_grad) / (np.linalg.norm(denoising_grad) + 1e-4)
    loss, metrics = terms(1.1, denoising_weight=0.5)
    np.testing.assert_allclose(float(metrics["denoising_balance"]), balance, rtol=1e-4)
    assert balance not in (0.0, 1.0) and float(terms(1.1, **plain)[1]["denoising_balance"]) == 1.0
    want = float(metrics["ctm_loss"]) + 0.5 * balance * float(metrics["denoising_loss"])
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    grad = jax.grad(lambda a: terms(a, denoising_weight=0.5)[0])(1.1)
    matching_scale_grad = jax.grad(lambda a: terms(a, denoising_weight=0.0, **plain)[0])(1.1)
    denoising_scale_grad = jax.grad(lambda a: terms(a, **plain)[1]["denoising_loss"])(1.1)
    np.testing.assert_allclose(float(grad), float(matching_scale_grad) + 0.5 * balance * float(denoising_scale_grad),
                               rtol=1e-4)
