"""SquareHead distillation for sparse fine-tuning (Kurtic et al. 2023, "Sparse Fine-tuning for
Inference Acceleration of Large Language Models"; IST-DASLab/SparseFinetuning, SparseML).

The dense model is the teacher, the pruned model the student. Per layer l (block outputs,
embeddings excluded) the student's hidden states are matched to the teacher's by a mean
squared error normalised by the teacher's mean square,
    sq_l = mean((s_l - t_l)^2) / mean(t_l^2)    over non-pad positions and features,
so layers with large activations do not dominate and every layer's term starts near the same
scale. The total objective is
    task + kl_weight * T^2 * KL(softmax(t/T) || softmax(s/T)) + squarehead_weight * sum_l sq_l.
Teacher arrays are stop-gradient. For an encoder-decoder, call `squarehead_loss` once per stack
(each with its own mask) and add the results.
"""

from __future__ import annotations

from typing import Sequence

import chex
import jax
import jax.numpy as jnp

_TINY = 1e-12  # a teacher layer that is exactly 0 would otherwise divide by 0


def _at_least_float32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _stack_layers(hidden: jax.Array | Sequence[jax.Array], name: str) -> jax.Array:
    if isinstance(hidden, (list, tuple)):
        if not hidden:
            raise ValueError(f"{name} has no layers")
        hidden = jnp.stack(hidden)
    if hidden.ndim != 4:
        raise ValueError(
            f"{name} must be [num_layers, B, L, D] (or a list of [B, L, D]), got shape {hidden.shape}"
        )
    return hidden


def squarehead_layer_losses(
    student_hidden: jax.Array | Sequence[jax.Array],
    teacher_hidden: jax.Array | Sequence[jax.Array],
    mask: jax.Array,
) -> jax.Array:
    """Per-layer mean((s - t)^2) / mean(t^2) over positions where `mask` is True, [num_layers].

    student_hidden, teacher_hidden: [num_layers, B, L, D] or lists of [B, L, D]; mask: [B, L].
    """
    student = _at_least_float32(_stack_layers(student_hidden, "student_hidden"))
    teacher = jax.lax.stop_gradient(_at_least_float32(_stack_layers(teacher_hidden, "teacher_hidden")))
    if student.shape != teacher.shape:
        raise ValueError(f"student hidden {student.shape} and teacher hidden {teacher.shape} differ")
    chex.assert_rank(mask, 2)
    if mask.shape != student.shape[1:3]:
        raise ValueError(f"mask {mask.shape} does not match hidden [B, L] = {student.shape[1:3]}")
    valid = mask[None, :, :, None]
    count = jnp.maximum(jnp.sum(mask, dtype=student.dtype), 1.0) * student.shape[-1]
    error = jnp.sum(jnp.where(valid, jnp.square(student - teacher), 0.0), axis=(1, 2, 3)) / count
    scale = jnp.sum(jnp.where(valid, jnp.square(teacher), 0.0), axis=(1, 2, 3)) / count
    return error / jnp.maximum(scale, _TINY)


def squarehead_loss(
    student_hidden: jax.Array | Sequence[jax.Array],
    teacher_hidden: jax.Array | Sequence[jax.Array],
    mask: jax.Array,
) -> jax.Array:
    """sum over layers of `squarehead_layer_losses`, [] (at least float32)."""
    return jnp.sum(squarehead_layer_losses(student_hidden, teacher_hidden, mask))


def distillation_kl(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    mask: jax.Array,
    *,
    temperature: float = 1.0,
) -> jax.Array:
    """T^2 * mean over positions where `mask` is True of KL(softmax(t/T) || softmax(s/T)), [].

    logits: [B, L, V]; mask: [B, L]. T^2 keeps gradient magnitudes comparable across T
    (Hinton et al. 2015).
    """
    chex.assert_rank([student_logits, teacher_logits, mask], [3, 3, 2])
    chex.assert_equal_shape([student_logits, teacher_logits])
    chex.assert_equal_shape_prefix([student_logits, mask], 2)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    teacher = _at_least_float32(jax.lax.stop_gradient(teacher_logits)) / temperature
    student = _at_least_float32(student_logits) / temperature
    teacher_log_probs = jax.nn.log_softmax(teacher, axis=-1)
    per_token = jnp.sum(
        jnp.exp(teacher_log_probs) * (teacher_log_probs - jax.nn.log_softmax(student, axis=-1)), axis=-1
    )
    count = jnp.maximum(jnp.sum(mask, dtype=per_token.dtype), 1.0)
    return temperature**2 * jnp.sum(jnp.where(mask, per_token, 0.0)) / count


def squarehead_distillation_loss(
    task_loss: jax.Array,
    student_hidden: jax.Array | Sequence[jax.Array],
    teacher_hidden: jax.Array | Sequence[jax.Array],
    hidden_mask: jax.Array,
    *,
    student_logits: jax.Array | None = None,
    teacher_logits: jax.Array | None = None,
    logit_mask: jax.Array | None = None,
    squarehead_weight: float = 1.0,
    kl_weight: float = 0.0,
    temperature: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """task_loss + kl_weight * T^2 KL + squarehead_weight * sum_l sq_l.

    task_loss: [] (e.g. cross-entropy of the student); hidden states and hidden_mask as in
    `squarehead_layer_losses`; the logits ([B, L, V]) and logit_mask ([B, L]) are needed only
    when kl_weight > 0. Returns (total [], {"task", "squarehead", "kl", "squarehead/layer_<i>"}).
    """
    chex.assert_shape(task_loss, ())
    layers = squarehead_layer_losses(student_hidden, teacher_hidden, hidden_mask)
    squarehead = jnp.sum(layers)
    if kl_weight:
        if student_logits is None or teacher_logits is None or logit_mask is None:
            raise ValueError("kl_weight > 0 needs student_logits, teacher_logits and logit_mask")
        kl = distillation_kl(student_logits, teacher_logits, logit_mask, temperature=temperature)
    else:
        kl = jnp.zeros([], squarehead.dtype)
    task_loss = _at_least_float32(task_loss)
    total = task_loss + kl_weight * kl + squarehead_weight * squarehead
    metrics = {"task": task_loss, "squarehead": squarehead, "kl": kl}
    metrics.update({f"squarehead/layer_{i}": layers[i] for i in range(layers.shape[0])})
    return total, metrics
