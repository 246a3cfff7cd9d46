"""The recipes' optimizer: AdamW on a linear-warmup cosine schedule after global-norm clipping."""

from __future__ import annotations

from typing import Any

import ml_collections
import optax


def adamw_warmup_cosine(optim: ml_collections.ConfigDict, steps: int, *,
                        decay_mask: Any = None) -> optax.GradientTransformation:
    """clip_by_global_norm(clip_norm) -> adamw(lr: 0 -> lr over warmup_steps, cosine to 5% of lr at ``steps``).

    optim: ``lr, warmup_steps, weight_decay, clip_norm, b1, b2``.
    decay_mask: optax's ``mask`` (a pytree of bools or a function of the params): which
    parameters get weight decay; None = all.
    """
    decay_steps = max(steps, optim.warmup_steps + 1)
    schedule = optax.warmup_cosine_decay_schedule(0.0, optim.lr, optim.warmup_steps, decay_steps,
                                                  end_value=optim.lr * 0.05)
    return optax.chain(optax.clip_by_global_norm(optim.clip_norm),
                       optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay,
                                   mask=decay_mask))
