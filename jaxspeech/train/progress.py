"""A tqdm progress bar over train steps: steps/s, ETA and the latest loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

import numpy as np
from tqdm.auto import tqdm


class Progress:
    """Bar from `initial` to `total` steps; `update` moves it to an absolute step."""

    def __init__(self, total: int, initial: int = 0, *, enabled: bool = True, file: TextIO | None = None):
        if not 0 <= initial <= total:
            raise ValueError(f"initial step {initial} is not in [0, total={total}]")
        self.step = initial
        self._bar = tqdm(
            total=total,
            initial=initial,
            unit="step",
            disable=not enabled,
            dynamic_ncols=True,
            file=file,
            mininterval=0.5,
        )

    def update(self, step: int, metrics: Mapping[str, Any] | None = None) -> None:
        """Advances to absolute `step`; shows metrics["loss"] when given (host values)."""
        self._bar.update(int(step) - self.step)
        self.step = int(step)
        if metrics is not None and "loss" in metrics:
            self._bar.set_postfix(loss=f"{float(np.asarray(metrics['loss'])):.4g}", refresh=False)

    def close(self) -> None:
        self._bar.close()
