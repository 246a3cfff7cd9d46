"""What the recipe tests share: a config file with test overrides, and the losses a run logged."""

import os

from jaxspeech.train.config import load_config
from jaxspeech.train.metrics import read_metrics


def recipe_config(path, corpus, steps, overrides, eval_every=0):
    """``path``'s config on ``corpus`` for ``steps`` steps, evaluating every ``eval_every`` (0 = never)."""
    return load_config(path, [f"--config.data.dir={corpus}", f"--config.train.steps={steps}",
                              f"--config.train.eval_every={eval_every}", *overrides])


def losses(workdir) -> dict[int, float]:
    """step -> training loss from ``workdir/metrics.jsonl``."""
    return {m["step"]: m["loss"] for m in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "loss" in m}
