import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxspeech.losses.squarehead import (
    distillation_kl,
    squarehead_distillation_loss,
    squarehead_layer_losses,
    squarehead_loss,
)

N, B, L, D, V = 3, 2, 6, 4, 5


def _hidden(seed=0):
    rng = np.random.default_rng(seed)
    # layers of very different scale: the normalisation must put them on one footing
    scales = np.array([0.1, 1.0, 30.0])[:, None, None, None]
    teacher = rng.normal(size=(N, B, L, D)) * scales
    student = teacher + 0.3 * rng.normal(size=(N, B, L, D)) * scales
    mask = np.ones((B, L), bool)
    mask[0, 4:] = False
    mask[1, 2:] = False
    return student.astype(np.float32), teacher.astype(np.float32), mask


def numpy_squarehead(student, teacher, mask):
    """Per layer: gather the valid [T, D] rows, then mean((s - t)^2) / mean(t^2)."""
    out = []
    for s, t in zip(student.astype(np.float64), teacher.astype(np.float64)):
        s, t = s[mask], t[mask]
        out.append(np.mean((s - t) ** 2) / np.mean(t**2))
    return np.array(out)


def test_layer_losses_match_numpy_and_sum():
    student, teacher, mask = _hidden()
    want = numpy_squarehead(student, teacher, mask)
    np.testing.assert_allclose(np.asarray(squarehead_layer_losses(student, teacher, mask)), want, rtol=1e-5)
    np.testing.assert_allclose(float(squarehead_loss(student, teacher, mask)), want.sum(), rtol=1e-5)
    # lists of [B, L, D] work like stacked arrays
    from_lists = squarehead_loss(list(student), list(teacher), mask)
    np.testing.assert_allclose(float(from_lists), want.sum(), rtol=1e-5)


def test_zero_when_student_equals_teacher_and_padding_ignored():
    student, teacher, mask = _hidden(1)
    assert float(squarehead_loss(teacher, teacher, mask)) == 0.0
    # padded positions may hold anything
    noisy = student.copy()
    noisy[:, ~mask] = 1e3
    clean = float(squarehead_loss(student, teacher, mask))
    np.testing.assert_allclose(float(squarehead_loss(noisy, teacher, mask)), clean, rtol=1e-6)


@pytest.mark.parametrize("factor", [1e-3, 7.0, 1e3])
def test_invariant_to_scaling_student_and_teacher(factor):
    student, teacher, mask = _hidden(2)
    base = np.asarray(squarehead_layer_losses(student, teacher, mask))
    scaled = np.asarray(squarehead_layer_losses(student * factor, teacher * factor, mask))
    np.testing.assert_allclose(scaled, base, rtol=1e-5)


def test_teacher_gets_no_gradient_and_student_gradient_is_closed_form():
    student, teacher, mask = _hidden(3)
    g_student, g_teacher = jax.grad(squarehead_loss, argnums=(0, 1))(student, teacher, mask)
    np.testing.assert_array_equal(np.asarray(g_teacher), 0.0)
    # d/ds sum((s-t)^2)/sum(t^2) over valid entries = 2 (s-t) / sum(t^2), per layer
    denom = np.array([np.sum(t[mask].astype(np.float64) ** 2) for t in teacher])[:, None, None, None]
    want = np.where(mask[None, :, :, None], 2 * (student - teacher) / denom, 0.0)
    np.testing.assert_allclose(np.asarray(g_student), want, rtol=1e-4, atol=1e-9)


def _logits(seed=4):
    rng = np.random.default_rng(seed)
    student, teacher = rng.normal(size=(2, B, L, V)) * 2
    return student.astype(np.float32), teacher.astype(np.float32)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_kl_matches_torch_kl_div(temperature):
    student, teacher = _logits()
    _, _, mask = _hidden()
    s = torch.log_softmax(torch.tensor(student, dtype=torch.float64) / temperature, -1)
    t = torch.log_softmax(torch.tensor(teacher, dtype=torch.float64) / temperature, -1)
    per_token = torch.nn.functional.kl_div(s, t, reduction="none", log_target=True).sum(-1).numpy()
    want = temperature**2 * per_token[mask].mean()
    got = distillation_kl(student, teacher, mask, temperature=temperature)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    same = distillation_kl(teacher, teacher, mask, temperature=temperature)
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    g_teacher = jax.grad(distillation_kl, argnums=1)(student, teacher, mask, temperature=temperature)
    np.testing.assert_array_equal(np.asarray(g_teacher), 0.0)


def test_total_combines_task_kl_and_squarehead():
    student_h, teacher_h, mask = _hidden(5)
    student_l, teacher_l = _logits(6)
    task = jnp.asarray(1.25)
    total, metrics = squarehead_distillation_loss(
        task, student_h, teacher_h, mask,
        student_logits=student_l, teacher_logits=teacher_l, logit_mask=mask,
        squarehead_weight=0.5, kl_weight=2.0, temperature=2.0,
    )  # fmt: skip
    sq = numpy_squarehead(student_h, teacher_h, mask)
    kl = float(distillation_kl(student_l, teacher_l, mask, temperature=2.0))
    np.testing.assert_allclose(float(total), 1.25 + 2.0 * kl + 0.5 * sq.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["squarehead/layer_2"]), sq[2], rtol=1e-5)
    assert float(metrics["task"]) == 1.25 and float(metrics["kl"]) == pytest.approx(kl)
    # without KL, logits are optional
    total_no_kl, metrics_no_kl = jax.jit(squarehead_distillation_loss)(task, student_h, teacher_h, mask)
    np.testing.assert_allclose(float(total_no_kl), 1.25 + sq.sum(), rtol=1e-5)
    assert float(metrics_no_kl["kl"]) == 0.0


def test_bad_input_is_named():
    student, teacher, mask = _hidden()
    with pytest.raises(ValueError, match="differ"):
        squarehead_loss(student[:2], teacher, mask)
    with pytest.raises(ValueError, match="mask"):
        squarehead_loss(student, teacher, mask[:, :3])
    with pytest.raises(ValueError, match="num_layers"):
        squarehead_loss(student[0], teacher[0], mask)
    with pytest.raises(ValueError, match="kl_weight"):
        squarehead_distillation_loss(jnp.asarray(0.0), student, teacher, mask, kl_weight=1.0)
    with pytest.raises(ValueError, match="temperature"):
        distillation_kl(*_logits(), mask, temperature=0.0)
