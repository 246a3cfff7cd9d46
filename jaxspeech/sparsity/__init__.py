"""Sparse fine-tuning: gradual magnitude pruning as an optax transformation, cubic schedules."""

from jaxspeech.sparsity.pruning import (
    PruningState,
    apply_masks,
    default_prunable,
    gradual_magnitude_pruning,
    param_path,
    pruning_masks,
    sparsity_of,
)
from jaxspeech.sparsity.schedules import PruningSchedule, cubic_sparsity, is_pruning_step, pruning_schedule

__all__ = [
    "PruningSchedule",
    "PruningState",
    "apply_masks",
    "cubic_sparsity",
    "default_prunable",
    "gradual_magnitude_pruning",
    "is_pruning_step",
    "param_path",
    "pruning_masks",
    "pruning_schedule",
    "sparsity_of",
]
