"""Gradual pruning schedules (Zhu & Gupta 2017, "To prune, or not to prune") as data.

A schedule says which optimizer steps prune and to what sparsity. The sparsity ramps cubically,
s(t) = s0 + (s1 - s0) (1 - (1 - x)^3) with x = (t - begin) / (end - begin) clipped to [0, 1], so
most weights go early while the network can still recover and few go near the end. Pruning
happens at begin, begin + frequency, ... and always at end, so the final sparsity is reached
even when (end - begin) is not a multiple of the frequency.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class PruningSchedule(NamedTuple):
    """When to prune and how much. Build it with `pruning_schedule`, which validates it."""

    initial_sparsity: float
    final_sparsity: float
    begin_step: int
    end_step: int
    frequency: int


def pruning_schedule(
    *,
    final_sparsity: float,
    begin_step: int,
    end_step: int,
    frequency: int = 1,
    initial_sparsity: float = 0.0,
) -> PruningSchedule:
    """A cubic schedule from `initial_sparsity` at `begin_step` to `final_sparsity` at `end_step`.

    Sparsities are fractions of prunable weights in [0, 1); steps count optimizer updates
    (0-based). `end_step == begin_step` is one-shot pruning to `final_sparsity`.
    """
    if not 0.0 <= initial_sparsity <= final_sparsity < 1.0:
        raise ValueError(
            "need 0 <= initial_sparsity <= final_sparsity < 1, got "
            f"initial_sparsity={initial_sparsity}, final_sparsity={final_sparsity}"
        )
    for name, value in (("begin_step", begin_step), ("end_step", end_step), ("frequency", frequency)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if begin_step < 0 or end_step < begin_step:
        raise ValueError(
            f"need 0 <= begin_step <= end_step, got begin_step={begin_step}, end_step={end_step}"
        )
    if frequency < 1:
        raise ValueError(f"frequency must be >= 1, got {frequency}")
    return PruningSchedule(float(initial_sparsity), float(final_sparsity), begin_step, end_step, frequency)


def cubic_sparsity(schedule: PruningSchedule, step: jax.Array | int) -> jax.Array:
    """Target sparsity at `step`: s0 before begin, the cubic ramp between, s1 after end. float32 []."""
    s0, s1, begin, end, _ = schedule
    step = jnp.asarray(step, jnp.float32)
    progress = jnp.clip((step - begin) / max(end - begin, 1), 0.0, 1.0)
    if end == begin:
        progress = (step >= begin).astype(jnp.float32)
    return (s0 + (s1 - s0) * (1.0 - (1.0 - progress) ** 3)).astype(jnp.float32)


def is_pruning_step(schedule: PruningSchedule, step: jax.Array | int) -> jax.Array:
    """Whether masks are recomputed at `step`: begin + k * frequency up to end, and end itself. bool []."""
    _, _, begin, end, frequency = schedule
    step = jnp.asarray(step, jnp.int32)
    on_grid = (step - begin) % frequency == 0
    return (step >= begin) & (step <= end) & (on_grid | (step == end))
