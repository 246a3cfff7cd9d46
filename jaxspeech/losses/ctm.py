"""Consistency Trajectory Models (Kim et al. 2024; SoundCTM, Saito et al. 2025) over any two-level
denoiser ``g(x, t, s, cond)``: the trajectory function ``G(x, t, s) = (s/t) x + (1 - s/t) g(x, t, s)``
(``trajectory_function``) is the sample at level s <= t on the probability-flow trajectory through x
at level t, so G(x, t, t) = x; as s -> t its slope is the ODE's exactly when g(x, t, t) is the
denoiser D(x, t) = E[x0 | x_t].

One step of the CTM loss: levels sigma_s <= sigma_u < sigma_t on a Karras grid of N levels (t uniform,
s uniform below t, u = t less k levels, k uniform in 1 .. min(teacher_steps, t - s)); the student jumps
G(x_t, t, s); the target solves the frozen teacher's ODE from t down the grid to u (k Euler or Heun
steps) and jumps from there with the student under stop-gradient of its parameters (``frozen``),
G_sg(x_u, u, s). The longer the teacher's share, the closer the target is to the true trajectory, and
the fewer rounds a long jump needs to learn (with one teacher step, as in consistency distillation,
the jump to sigma_min is learnt level by level from the bottom). Both are carried on to sigma_min by the
moving average of the student (``target``, a slowly moving map to data space), and compared there: the
mean squared error where the mask holds (the paper's LPIPS is for images). These roles are those of the
authors' code (sony/ctm: ``ctm_target_inner_type='model_sg'``, the outer maps by the EMA model). The
auxiliary denoising loss is the EDM loss of the denoiser g(x, sigma, sigma), weighted by
``denoising_weight`` (SoundCTM: 1) and, with ``adaptive_weight`` (the authors' default), also by the
ratio of the two terms' gradient norms, ||d L_CTM|| / (||d L_DSM|| + 1e-4) clipped to [0, 1e4] and
held constant, so that neither term's gradient swamps the other's. The authors measure the norms at
the weight of the network's last layer; here they are measured at the network's output (the
gradient of each term with respect to an additive zero on g's output in its own call), which any
callable has.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxspeech.losses.consistency import consistency_distance
from jaxspeech.losses.edm import edm_loss
from jaxspeech.losses.masking import leading, prefix_mask
from jaxspeech.noise_levels import RHO, SIGMA_DATA, SIGMA_MAX, SIGMA_MIN, Denoiser, karras_sigmas, unit_noise
from jaxspeech.samplers.consistency import Trajectory
from jaxspeech.samplers.edm import probability_flow_step


def trajectory_function(g: Trajectory) -> Trajectory:
    """``G(x, t, s, cond) = (s/t) x + (1 - s/t) g(x, t, s, cond)`` from a two-level denoiser g.
    x: [B, ...]; t, s: [B]."""

    def trajectory(x: jax.Array, t: jax.Array, s: jax.Array, cond: Any = None) -> jax.Array:
        ratio = leading(jnp.asarray(s, jnp.float32) / jnp.asarray(t, jnp.float32), x).astype(x.dtype)
        return ratio * x + (1.0 - ratio) * g(x, t, s, cond)

    return trajectory


def _solve_down(teacher: Denoiser, x: jax.Array, sigmas: jax.Array, start: jax.Array, stop: jax.Array, steps: int,
                cond: Any, method: str) -> jax.Array:
    """Each sample's probability-flow ODE down the grid from ``sigmas[start]`` to ``sigmas[stop]`` (start >
    stop, per sample [B]), one level per step, ``steps`` >= start - stop iterations masked per sample."""

    def step(k, x):
        index = start - k
        active = index > stop
        level, below = sigmas[jnp.maximum(index, 1)], sigmas[jnp.maximum(index - 1, 0)]
        moved = probability_flow_step(teacher, x, level, below, cond=cond, method=method)
        return jnp.where(leading(active, x), moved, x)

    return jax.lax.fori_loop(0, steps, step, x)


def ctm_loss(
    g: Trajectory,
    x1: jax.Array,
    key: jax.Array,
    *,
    frozen: Trajectory,
    target: Trajectory,
    teacher: Denoiser,
    mask: jax.Array | None = None,
    cond: Any = None,
    num_levels: int = 40,
    teacher_steps: int | None = None,
    solver: str = "heun",
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
    denoising_weight: float = 1.0,
    adaptive_weight: bool = True,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float = SIGMA_DATA,
    noise_mean: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """CTM loss + denoising_weight (x the gradient balance with ``adaptive_weight``) x the denoising loss.
    Returns (loss, {"ctm_loss", "denoising_loss", "denoising_balance", "jump_fraction"}) (the balance is 1
    without ``adaptive_weight``; jump_fraction: mean (t - s) / t, how far the student jumps).

    g: the student's two-level denoiser ``g(x, t [B], s [B], cond)`` (with gradients); frozen: the same
    function under stop-gradient of its parameters (the target's jump); target: the moving-average g
    (the maps to sigma_min; gradients flow through its input); teacher: the frozen EDM denoiser
    ``D(x, sigma [B], cond)``; teacher_steps: the
    most solver steps from t to u (None = num_levels - 1, the whole grid; the loop always runs this
    many, masked per sample, so it sets the cost). x1: data [B, ...]; mask: bool, a prefix of x1's shape
    (None = all valid); noise_mean: broadcastable to x1, the mean of the unit noise (None = 0).
    """
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 2:
        raise ValueError(f"num_levels must be a Python int >= 2, got {num_levels!r}")
    if denoising_weight < 0:
        raise ValueError(f"denoising_weight must be >= 0, got {denoising_weight}")
    teacher_steps = num_levels - 1 if teacher_steps is None else teacher_steps
    if isinstance(teacher_steps, bool) or not isinstance(teacher_steps, int) or teacher_steps < 1:
        raise ValueError(f"teacher_steps must be a Python int >= 1 (or None), got {teacher_steps!r}")
    mask = prefix_mask(mask, x1)
    sigmas = karras_sigmas(num_levels, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    k_t, k_s, k_noise, k_denoise, k_u = jax.random.split(key, 5)
    t_index = jax.random.randint(k_t, x1.shape[:1], 1, num_levels)
    s_index = jax.random.randint(k_s, x1.shape[:1], 0, t_index)  # uniform in [0, t_index)
    u_index = t_index - jax.random.randint(k_u, x1.shape[:1], 1, jnp.minimum(teacher_steps, t_index - s_index) + 1)
    t, u, s = sigmas[t_index], sigmas[u_index], sigmas[s_index]
    floor = jnp.full_like(s, sigma_min)
    x_t = x1 + leading(t, x1).astype(x1.dtype) * unit_noise(k_noise, x1.shape, noise_mean=noise_mean, dtype=x1.dtype)

    jump_frozen, jump_target = trajectory_function(frozen), trajectory_function(target)
    x_u = jax.lax.stop_gradient(_solve_down(teacher, x_t, sigmas, t_index, u_index, teacher_steps, cond, solver))
    aimed = jax.lax.stop_gradient(jump_target(jump_frozen(x_u, u, s, cond), s, floor, cond))

    # Each term as a function of an additive zero on g's output in its call: its gradient there is the
    # term's gradient with respect to the network's output.
    def matching_term(offset):
        jump = trajectory_function(lambda x, t_, s_, c: g(x, t_, s_, c) + offset)
        return consistency_distance(jump_target(jump(x_t, t, s, cond), s, floor, cond), aimed, mask)

    def denoising_term(offset):
        return edm_loss(lambda x, sigma, c: g(x, sigma, sigma, c) + offset, x1, k_denoise, mask=mask, cond=cond,
                        p_mean=p_mean, p_std=p_std, sigma_data=sigma_data, noise_mean=noise_mean)[0]

    if adaptive_weight:
        zero = jnp.zeros_like(x1)
        matching, matching_grad = jax.value_and_grad(matching_term)(zero)
        denoising, denoising_grad = jax.value_and_grad(denoising_term)(zero)
        ratio = jnp.linalg.norm(matching_grad.astype(jnp.float32)) / (
            jnp.linalg.norm(denoising_grad.astype(jnp.float32)) + 1e-4)
        balance = jax.lax.stop_gradient(jnp.clip(ratio, 0.0, 1e4))
    else:
        matching, denoising, balance = matching_term(0.0), denoising_term(0.0), jnp.ones((), jnp.float32)
    loss = matching + denoising_weight * balance * denoising
    return loss, {"ctm_loss": matching, "denoising_loss": denoising, "denoising_balance": balance,
                  "jump_fraction": jnp.mean((t - s) / t)}
