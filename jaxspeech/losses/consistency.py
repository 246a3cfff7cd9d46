"""Consistency training and distillation over any denoiser ``D(x, sigma, cond)`` that meets the
boundary condition D(x, sigma_min) = x (``noise_levels.consistency_preconditioning``): improved
consistency training, iCT (Song & Dhariwal 2023), easy consistency tuning, ECT (Geng et al. 2024), and
consistency distillation, CD (Song et al. 2023; CoMoSpeech, Ye et al. 2023).

iCT. One step: draw a grid index i with lognormal probabilities over the current Karras grid of N levels,
noise the data at the two neighbouring levels with the same noise z, and pull the student
D(x + sigma_{i+1} z, sigma_{i+1}) towards the target D(x + sigma_i z, sigma_i), the same network under
stop-gradient (no EMA teacher), with the pseudo-Huber distance on the whole per-sample vector and the
weight 1 / (sigma_{i+1} - sigma_i). N doubles from s0 to s1 over training (the curriculum); it is
computed from the traced step, so a change of N never recompiles. A denoiser that uses dropout must
close over one dropout key: both passes then see the same mask, as the paper requires.

ECT. Continuous levels: t is lognormal, and r = t (1 - q^-(stage+1) (1 + k sigmoid(-b t))), clamped at 0,
approaches t as the stage grows (stage = step // steps_per_stage); the student D(x + t z, t) is pulled
towards D(x + r z, r) under stop-gradient (x itself where r = 0, the denoising loss), with the L2 distance
(pseudo-Huber for c > 0) weighted by 1 / (t - r), as iCT's 1 / (sigma_{i+1} - sigma_i) (locuslab/ect's
``loss / (t - r)``). Initialised from an EDM teacher, the first
stages are close to its own denoising loss.

CD. A grid index n ~ U{0 .. N-2} over a Karras grid of N levels; the student at sigma_{n+1} is pulled
towards the target network (a moving average of the student: CoMoSpeech 0.95) at sigma_n, evaluated
where one step of a frozen teacher's probability-flow ODE (Euler or Heun) from sigma_{n+1} lands:
the student learns the teacher's trajectories. Distance: the masked mean squared error (CoMoSpeech), or
pseudo-Huber per sample when ``huber_scale`` is given.
"""

from __future__ import annotations

import math
from typing import Any

import chex
import jax
import jax.numpy as jnp

from jaxspeech.losses.masking import leading, masked_mean, prefix_mask
from jaxspeech.noise_levels import RHO, SIGMA_MAX, SIGMA_MIN, Denoiser, karras_sigmas, unit_noise
from jaxspeech.samplers.edm import probability_flow_step

HUBER_SCALE = 0.00054  # c = HUBER_SCALE * sqrt(elements per sample)


def _doublings(s0: int, s1: int) -> int:
    if isinstance(s0, bool) or not isinstance(s0, int) or s0 < 1:
        raise ValueError(f"s0 must be a Python int >= 1, got {s0!r}")
    if isinstance(s1, bool) or not isinstance(s1, int) or s1 < s0:
        raise ValueError(f"s1 must be a Python int >= s0 = {s0}, got {s1!r}")
    return int(math.log2(s1 // s0))


def ict_discretization(step: int | jax.Array, total_steps: int, *, s0: int = 10, s1: int = 1280) -> jax.Array:
    """Grid size at training step k: ``N(k) = min(s0 2^floor(k / K'), s1) + 1`` with
    ``K' = floor(K / (log2 floor(s1 / s0) + 1))`` (the doubling curriculum). ``step`` may be traced;
    returns an int32 scalar."""
    doublings = _doublings(s0, s1)
    if isinstance(total_steps, bool) or not isinstance(total_steps, int):
        raise ValueError(f"total_steps must be a Python int, got {total_steps!r}")
    stage_steps = total_steps // (doublings + 1)
    if stage_steps < 1:
        raise ValueError(f"total_steps = {total_steps} is too short for the curriculum from s0 = {s0} to "
                         f"s1 = {s1}: it needs at least {doublings + 1} steps (one per grid size)")
    stage = jnp.minimum(jnp.asarray(step, jnp.int32) // stage_steps, doublings + 1)
    return jnp.minimum(s0 * 2**stage, s1) + 1


def lognormal_index_probabilities(sigmas: jax.Array, num: int | jax.Array, *, p_mean: float = -1.1,
                                  p_std: float = 2.0) -> jax.Array:
    """p(i) for i = 0 .. len(sigmas) - 2: proportional to
    ``erf((ln s_{i+1} - Pm) / (sqrt2 Ps)) - erf((ln s_i - Pm) / (sqrt2 Ps))`` for i < num - 1, zero after
    (the grid's first ``num`` entries are the current levels). sigmas: [S] increasing; returns [S - 1]."""
    if p_std <= 0:
        raise ValueError(f"p_std must be > 0, got {p_std}")
    cdf = jax.scipy.special.erf((jnp.log(sigmas) - p_mean) / (math.sqrt(2.0) * p_std))
    mass = jnp.where(jnp.arange(sigmas.shape[0] - 1) < num - 1, cdf[1:] - cdf[:-1], 0.0)
    return mass / jnp.sum(mass)


def pseudo_huber(difference: jax.Array, c: jax.Array | float) -> jax.Array:
    """``sqrt(||d||^2 + c^2) - c`` over each sample's whole vector. difference: [B, ...]; returns [B].

    Computed as ``||d||^2 / (sqrt(||d||^2 + c^2) + c)``: the subtraction would cancel in float32 when
    ``||d|| << c`` (late in training, when student and target agree)."""
    squared = jnp.sum(jnp.square(difference.astype(jnp.float32)).reshape(difference.shape[0], -1), axis=1)
    denominator = jnp.sqrt(squared + jnp.square(c)) + c
    return squared / jnp.where(denominator > 0, denominator, 1.0)


def _masked_difference(student: jax.Array, target: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(student - target in float32, zero where ``mask`` does not hold [B, ...]; valid elements per sample [B])."""
    chex.assert_equal_shape([student, target])
    elements = jnp.broadcast_to(leading(mask, target), target.shape)
    difference = jnp.where(elements, student.astype(jnp.float32) - target.astype(jnp.float32), 0.0)
    return difference, jnp.sum(elements.reshape(target.shape[0], -1), axis=1)


def ict_loss(
    denoiser: Denoiser,
    x1: jax.Array,
    key: jax.Array,
    *,
    step: int | jax.Array,
    total_steps: int,
    mask: jax.Array | None = None,
    cond: Any = None,
    s0: int = 10,
    s1: int = 1280,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
    p_mean: float = -1.1,
    p_std: float = 2.0,
    huber_scale: float | None = HUBER_SCALE,
    lognormal_indices: bool = True,
    noise_mean: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """iCT loss at training ``step`` of ``total_steps``. Returns (loss, {"ict_loss", "grid_size",
    "sigma_median"}).

    x1: data [B, ...]; mask: bool, a prefix of x1's shape (None = all valid): masked elements count
    neither in the distance nor in c = huber_scale sqrt(valid elements of the sample); samples with no
    valid element are left out of the mean; noise_mean: broadcastable to x1, the mean of the unit noise
    (None = 0). The paper's ablations: ``huber_scale=None`` is the squared L2 distance of the original
    consistency training, ``lognormal_indices=False`` draws the grid index uniformly.
    ``denoiser(x, sigma [B], cond) -> like x``.
    """
    mask = prefix_mask(mask, x1)
    num = ict_discretization(step, total_steps, s0=s0, s1=s1)
    sigmas = karras_sigmas(num, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, size=s1 + 1)
    k_index, k_noise = jax.random.split(key)
    if lognormal_indices:
        probabilities = lognormal_index_probabilities(sigmas, num, p_mean=p_mean, p_std=p_std)
    else:
        probabilities = (jnp.arange(s1) < num - 1) / (num - 1)
    index = jax.random.choice(k_index, s1, (x1.shape[0],), p=probabilities)
    sigma, sigma_next = sigmas[index], sigmas[index + 1]
    noise = unit_noise(k_noise, x1.shape, noise_mean=noise_mean, dtype=x1.dtype)
    expand = lambda s: leading(s, x1).astype(x1.dtype)
    student = denoiser(x1 + expand(sigma_next) * noise, sigma_next, cond)
    target = jax.lax.stop_gradient(denoiser(x1 + expand(sigma) * noise, sigma, cond))
    difference, valid = _masked_difference(student, target, mask)
    if huber_scale is None:
        distance = jnp.sum(jnp.square(difference).reshape(difference.shape[0], -1), axis=1)
    else:
        distance = pseudo_huber(difference, huber_scale * jnp.sqrt(valid.astype(jnp.float32)))
    weighted = jnp.where(valid > 0, distance / (sigma_next - sigma), 0.0)
    loss = jnp.sum(weighted) / jnp.maximum(jnp.sum(valid > 0), 1)
    return loss, {"ict_loss": loss, "grid_size": num, "sigma_median": jnp.median(sigma_next)}


def ect_r_of_t(t: jax.Array, stage: int | jax.Array, *, q: float = 2.0, k: float = 8.0, b: float = 1.0) -> jax.Array:
    """ECT's mapping ``r = max(t (1 - q^-(stage+1) (1 + k sigmoid(-b t))), 0)``, shaped like ``t``;
    ``stage`` may be traced."""
    if q <= 1:
        raise ValueError(f"q must be > 1 (r tends to t as q^-(stage+1) vanishes), got {q}")
    decay = jnp.power(jnp.float32(q), -(jnp.asarray(stage, jnp.float32) + 1.0))
    return jnp.maximum(t * (1.0 - decay * (1.0 + k * jax.nn.sigmoid(-b * t))), 0.0)


def ect_loss(
    denoiser: Denoiser,
    x1: jax.Array,
    key: jax.Array,
    *,
    step: int | jax.Array,
    steps_per_stage: int,
    mask: jax.Array | None = None,
    cond: Any = None,
    p_mean: float = -1.1,
    p_std: float = 2.0,
    q: float = 2.0,
    k: float = 8.0,
    b: float = 1.0,
    c: float = 0.0,
    noise_mean: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ECT loss at training ``step``. Returns (loss, {"ect_loss", "r_over_t", "stage"}).

    x1: data [B, ...]; mask: bool, a prefix of x1's shape (None = all valid): masked elements count
    neither in the distance nor in it as data; ``c``: pseudo-Huber constant (0 = L2 norm, ECT's
    default); noise_mean: broadcastable to x1, the mean of the unit noise (None = 0).
    ``denoiser(x, sigma [B], cond) -> like x``.
    """
    if isinstance(steps_per_stage, bool) or not isinstance(steps_per_stage, int) or steps_per_stage < 1:
        raise ValueError(f"steps_per_stage must be a Python int >= 1, got {steps_per_stage!r}")
    if p_std <= 0:
        raise ValueError(f"p_std must be > 0, got {p_std}")
    mask = prefix_mask(mask, x1)
    stage = jnp.asarray(step, jnp.int32) // steps_per_stage
    k_t, k_noise = jax.random.split(key)
    t = jnp.exp(p_mean + p_std * jax.random.normal(k_t, x1.shape[:1], jnp.float32))
    r = ect_r_of_t(t, stage, q=q, k=k, b=b)
    noise = unit_noise(k_noise, x1.shape, noise_mean=noise_mean, dtype=x1.dtype)
    expand = lambda s: leading(s, x1).astype(x1.dtype)
    student = denoiser(x1 + expand(t) * noise, t, cond)
    # r = 0 would put log(0) into the noise embedding: those rows are evaluated at a tiny level and replaced
    # by the data, the exact target there.
    target = denoiser(x1 + expand(r) * noise, jnp.maximum(r, 1e-12), cond)
    target = jax.lax.stop_gradient(jnp.where(expand(r) > 0, jnp.nan_to_num(target), x1))
    difference, valid = _masked_difference(student, target, mask)
    valid = valid > 0
    weighted = jnp.where(valid, pseudo_huber(difference, c) / (t - r), 0.0)
    loss = jnp.sum(weighted) / jnp.maximum(jnp.sum(valid), 1)
    return loss, {"ect_loss": loss, "r_over_t": jnp.mean(r / t), "stage": stage}


def consistency_distance(student: jax.Array, target: jax.Array, mask: jax.Array,
                         huber_scale: float | None = None) -> jax.Array:
    """The batch's consistency distance: the masked mean squared error (``huber_scale`` None), or the mean
    over samples with a valid element of pseudo-Huber with c = huber_scale sqrt(valid elements)."""
    if huber_scale is None:
        chex.assert_equal_shape([student, target])
        return masked_mean(jnp.square(student.astype(jnp.float32) - target.astype(jnp.float32)), mask)
    difference, valid = _masked_difference(student, target, mask)
    distance = pseudo_huber(difference, huber_scale * jnp.sqrt(valid.astype(jnp.float32)))
    return jnp.sum(jnp.where(valid > 0, distance, 0.0)) / jnp.maximum(jnp.sum(valid > 0), 1)


def cd_loss(
    student: Denoiser,
    x1: jax.Array,
    key: jax.Array,
    *,
    target: Denoiser,
    teacher: Denoiser,
    mask: jax.Array | None = None,
    cond: Any = None,
    num_levels: int = 50,
    solver: str = "euler",
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
    huber_scale: float | None = None,
    noise_mean: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Consistency distillation loss. Returns (loss, {"cd_loss", "sigma_median"}).

    student, target: consistency functions ``f(x, sigma [B], cond)`` (the target is the moving average,
    under stop-gradient here); teacher: the frozen EDM denoiser whose ODE step (``solver``: "euler" or
    "heun") moves x from sigma_{n+1} to sigma_n. x1: data [B, ...]; mask: bool, a prefix of x1's shape
    (None = all valid); noise_mean: broadcastable to x1, the mean of the unit noise (None = 0).
    """
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 2:
        raise ValueError(f"num_levels must be a Python int >= 2, got {num_levels!r}")
    mask = prefix_mask(mask, x1)
    sigmas = karras_sigmas(num_levels, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    k_index, k_noise = jax.random.split(key)
    index = jax.random.randint(k_index, x1.shape[:1], 0, num_levels - 1)
    sigma, sigma_next = sigmas[index], sigmas[index + 1]
    x_next = x1 + leading(sigma_next, x1).astype(x1.dtype) * unit_noise(k_noise, x1.shape, noise_mean=noise_mean,
                                                                         dtype=x1.dtype)
    predicted = student(x_next, sigma_next, cond)
    x_teacher = probability_flow_step(teacher, x_next, sigma_next, sigma, cond=cond, method=solver)
    aimed = jax.lax.stop_gradient(target(jax.lax.stop_gradient(x_teacher), sigma, cond))
    loss = consistency_distance(predicted, aimed, mask, huber_scale)
    return loss, {"cd_loss": loss, "sigma_median": jnp.median(sigma_next)}
