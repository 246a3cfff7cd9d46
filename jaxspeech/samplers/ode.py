"""Fixed-step ODE samplers over any vector field ``v(x_t, t, cond)``, integrating t from 0 to 1.

Methods and their number of field evaluations (NFE) per step: Euler 1 (order 1), midpoint 2
(order 2), Heun 2 (order 2, trapezoidal with a full Euler predictor), RK4 4 (order 4); a run of
``steps`` steps costs ``function_evaluations(method, steps)``. With classifier-free guidance
each evaluation is one call of the field on a batch of 2B (conditional and unconditional rows
together, as in F5-TTS), counted as one evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

VectorField = Callable[[jax.Array, jax.Array, Any], jax.Array]
_TimeField = Callable[[jax.Array, jax.Array], jax.Array]  # (x [B,...], t scalar) -> [B,...]

# The warp t + s (cos(pi t / 2) - 1 + t) has slope 1 + s (1 - pi/2 sin(pi t / 2)), which stays
# >= 0 on [0, 1] exactly for s in [-1, 2 / (pi - 2)]; outside it the grid would go backwards.
SWAY_RANGE = (-1.0, 2.0 / (math.pi - 2.0))
F5_SWAY = -1.0


def _euler(field: _TimeField, x, t, dt):
    return x + dt * field(x, t)


def _midpoint(field: _TimeField, x, t, dt):
    k1 = field(x, t)
    return x + dt * field(x + 0.5 * dt * k1, t + 0.5 * dt)


def _heun(field: _TimeField, x, t, dt):
    k1 = field(x, t)
    k2 = field(x + dt * k1, t + dt)
    return x + 0.5 * dt * (k1 + k2)


def _rk4(field: _TimeField, x, t, dt):
    k1 = field(x, t)
    k2 = field(x + 0.5 * dt * k1, t + 0.5 * dt)
    k3 = field(x + 0.5 * dt * k2, t + 0.5 * dt)
    k4 = field(x + dt * k3, t + dt)
    return x + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


# name -> (one step, field evaluations per step)
METHODS = {"euler": (_euler, 1), "midpoint": (_midpoint, 2), "heun": (_heun, 2), "rk4": (_rk4, 4)}


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {sorted(METHODS)}")


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a Python int >= 1 (it fixes the loop length), got {steps!r}")


def function_evaluations(method: str, steps: int) -> int:
    """Number of vector-field calls (NFE) that ``sample_ode(..., method, steps)`` makes."""
    _check_method(method)
    _check_steps(steps)
    return METHODS[method][1] * steps


def sway_time_grid(steps: int, sway: float | None = None, *, dtype=jnp.float32) -> jax.Array:
    """Time grid [steps + 1] from 0 to 1: uniform, or sway-warped (F5-TTS) if ``sway`` is given.

    Sway maps t -> t + s (cos(pi t / 2) - 1 + t), keeping 0 and 1 fixed; s < 0 packs steps near
    t = 0 (F5 uses s = -1). s must lie in SWAY_RANGE so the grid stays increasing.
    """
    _check_steps(steps)
    t = jnp.linspace(0.0, 1.0, steps + 1, dtype=dtype)
    if sway is None:
        return t
    low, high = SWAY_RANGE
    if not low <= sway <= high:
        raise ValueError(f"sway coefficient {sway} outside [{low}, {high:.4f}]: the time grid would not be monotone")
    return t + sway * (jnp.cos(0.5 * jnp.pi * t) - 1.0 + t)


def classifier_free_guidance(vector_field: VectorField, uncond: Any, guidance_scale: float | jax.Array,
                             *, norm_cap: bool = False) -> VectorField:
    """A vector field ``v_w(x, t, cond) = v_c + (v_c - v_u) * guidance_scale``.

    ``v_c = v(x, t, cond)`` and ``v_u = v(x, t, uncond)`` come from one call of ``vector_field``
    on a 2B batch: x and t repeated, cond and uncond concatenated leaf by leaf along axis 0, so
    cond leaves are [B, ...] and uncond (the null condition, e.g. a zeroed or learned null
    embedding) has the same tree structure with leaves broadcastable to them (e.g. [1, D]).
    Scale 0 gives the conditional field. norm_cap: scale each sample's ``v_w`` down to the norm of
    its ``v_c`` where it is larger (UniVoice's CFG renormalisation). Any function
    ``f(x, *levels, cond)`` is guided the same way (a denoiser ``D(x, sigma, cond)``, a trajectory
    function ``G(x, t, s, cond)``): every level [B] is repeated like t.
    """

    def guided(x: jax.Array, *levels_and_cond: Any) -> jax.Array:
        *levels, cond = levels_and_cond
        if jax.tree.structure(cond) != jax.tree.structure(uncond):
            raise ValueError(
                f"uncond must have the structure of cond: {jax.tree.structure(uncond)} vs {jax.tree.structure(cond)}"
            )
        both = jax.tree.map(lambda c, u: jnp.concatenate([c, jnp.broadcast_to(u, c.shape)]), cond, uncond)
        out = vector_field(jnp.concatenate([x, x]), *(jnp.concatenate([t, t]) for t in levels), both)
        pred, pred_uncond = jnp.split(out, 2)
        guided_pred = pred + (pred - pred_uncond) * guidance_scale
        if not norm_cap:
            return guided_pred
        axes = tuple(range(1, pred.ndim))
        norm = jnp.sqrt(jnp.sum(jnp.square(guided_pred), axis=axes, keepdims=True))
        cap = jnp.sqrt(jnp.sum(jnp.square(pred), axis=axes, keepdims=True))
        return guided_pred * jnp.minimum(1.0, cap / jnp.maximum(norm, 1e-12))

    return guided


def sample_ode(
    vector_field: VectorField,
    key: jax.Array | None,
    shape_or_x0: tuple[int, ...] | jax.Array,
    *,
    cond: Any = None,
    steps: int = 10,
    method: str = "euler",
    uncond: Any = None,
    guidance_scale: float | jax.Array | None = None,
    guidance_norm_cap: bool = False,
    sway: bool | float = False,
    temperature: float = 1.0,
    return_trajectory: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Integrate dx/dt = v(x, t, cond) from t = 0 to t = 1 in ``steps`` fixed steps.

    shape_or_x0: a shape [B,...], to start from ``temperature * normal(key, shape)`` (Matcha
    synthesis uses temperature 0.667), or a start array x0 [B,...] (then ``key`` is unused).
    ``vector_field(x [B,...], t [B], cond) -> [B,...]``. Classifier-free guidance is on when
    ``uncond`` and ``guidance_scale`` are given (both or neither; F5 uses 2.0), see
    ``classifier_free_guidance`` (``guidance_norm_cap``: its norm_cap). ``sway``: False for a
    uniform grid, True for F5's s = -1, or a coefficient s (see ``sway_time_grid``). ``steps``,
    ``method`` and ``return_trajectory`` are static. Returns x at t = 1, and with
    ``return_trajectory`` also the states at every grid time, [steps + 1, B, ...] starting with x0.
    NFE: ``function_evaluations(method, steps)``.
    """
    _check_method(method)
    _check_steps(steps)
    if (uncond is None) != (guidance_scale is None):
        raise ValueError("classifier-free guidance needs both uncond and guidance_scale (or neither)")
    if isinstance(shape_or_x0, (tuple, list)):
        if key is None:
            raise ValueError("a key is needed to draw the start noise from a shape")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        x0 = temperature * jax.random.normal(key, tuple(shape_or_x0), jnp.float32)
    else:
        if temperature != 1.0:
            raise ValueError("temperature scales noise drawn from a key; scale the given x0 yourself")
        x0 = jnp.asarray(shape_or_x0)
    if x0.ndim < 1 or not jnp.issubdtype(x0.dtype, jnp.floating):
        raise ValueError(f"x0 must be a float array with a leading batch axis, got {x0.dtype}{list(x0.shape)}")
    if isinstance(sway, bool):
        sway = F5_SWAY if sway else None
    # The state, times and step arithmetic run in at least float32 (x64 runs keep float64) so
    # that low-precision inputs do not accumulate rounding over the steps; x1 gets x0's dtype.
    work_dtype = jnp.promote_types(x0.dtype, jnp.float32)
    grid = sway_time_grid(steps, sway, dtype=work_dtype)

    field = (vector_field if uncond is None else
             classifier_free_guidance(vector_field, uncond, guidance_scale, norm_cap=guidance_norm_cap))
    batch = x0.shape[0]

    def time_field(x, t):
        return field(x, jnp.full((batch,), t, work_dtype), cond).astype(work_dtype)

    step = METHODS[method][0]

    def body(x, times):
        t, t_next = times
        x_next = step(time_field, x, t, t_next - t)
        return x_next, (x_next if return_trajectory else None)

    start = x0.astype(work_dtype)
    x1, states = jax.lax.scan(body, start, (grid[:-1], grid[1:]))
    if return_trajectory:
        return x1.astype(x0.dtype), jnp.concatenate([start[None], states]).astype(x0.dtype)
    return x1.astype(x0.dtype)
