"""The ``matcha-tts`` package's own ``MatchaTTS`` without its training stack, for parity checks and
speed comparisons against the imported model (``matcha_import``).

The package's model modules import Lightning (the base class), Hydra helpers (``matcha.utils``) and a
Cython alignment search built against numpy 1; synthesis uses none of them. :func:`matcha_modules`
stubs those three and imports the rest as installed (torch, diffusers, einops and conformer are
needed: Matcha's U-Net blocks are diffusers' BasicTransformerBlock).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import types
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any


def _namespace(value: Any) -> Any:
    return SimpleNamespace(**{k: _namespace(v) for k, v in value.items()}) if isinstance(value, Mapping) else value


@contextlib.contextmanager
def matcha_modules() -> Iterator[types.ModuleType]:
    """``matcha.models.matcha_tts`` with Lightning, ``matcha.utils`` and the Cython search stubbed;
    ``sys.modules`` is restored on exit."""
    import torch

    spec = importlib.util.find_spec("matcha")
    if spec is None:
        raise ImportError("the matcha-tts package is not installed (pip install --no-deps matcha-tts)")
    root = spec.submodule_search_locations[0]
    saved = {name: module for name, module in sys.modules.items() if name == "matcha" or name.startswith("matcha.")}

    class BaseLightningClass(torch.nn.Module):
        def save_hyperparameters(self, *args, **kwargs):
            pass

        def update_data_statistics(self, statistics):
            self.register_buffer("mel_mean", torch.tensor(statistics["mel_mean"]))
            self.register_buffer("mel_std", torch.tensor(statistics["mel_std"]))

    utils = types.ModuleType("matcha.utils")
    utils.__path__ = [os.path.join(root, "utils")]
    utils.get_pylogger = logging.getLogger
    pylogger = types.ModuleType("matcha.utils.pylogger")
    pylogger.get_pylogger = logging.getLogger
    search = types.ModuleType("matcha.utils.monotonic_align")
    search.maximum_path = None  # training only
    base = types.ModuleType("matcha.models.baselightningmodule")
    base.BaseLightningClass = BaseLightningClass
    sys.modules.update({"matcha.utils": utils, "matcha.utils.pylogger": pylogger,
                        "matcha.utils.monotonic_align": search, "matcha.models.baselightningmodule": base})
    try:
        yield importlib.import_module("matcha.models.matcha_tts")
    finally:
        for name in [n for n in sys.modules if n == "matcha" or n.startswith("matcha.")]:
            del sys.modules[name]
        sys.modules.update(saved)


def matcha_model(module: types.ModuleType, hparams: Mapping[str, Any]):
    """A randomly initialised ``MatchaTTS`` (eval mode) of a checkpoint's ``hyper_parameters``;
    ``module``: from :func:`matcha_modules`."""
    h = _namespace(hparams)
    return module.MatchaTTS(hparams["n_vocab"], hparams["n_spks"], hparams["spk_emb_dim"], hparams["n_feats"],
                            h.encoder, dict(hparams["decoder"]), h.cfm, dict(hparams["data_statistics"]),
                            None).eval()
