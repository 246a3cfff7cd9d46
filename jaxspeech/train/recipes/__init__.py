"""Recipes: what `jaxspeech train | evaluate | transcribe` run for a config's ``recipe`` field.

A recipe module exposes ``train(config, workdir)`` and ``evaluate(workdir, *, split, beam_size)``;
recognizers also ``transcribe(workdir, files, *, beam_size)``. A small registry, not a class tree.
"""

import importlib
import os
from types import ModuleType

from jaxspeech.train.config import read_saved_config

_RECIPES = {"ctc_asr": "jaxspeech.train.recipes.ctc_asr", "vocoder": "jaxspeech.train.recipes.vocoder",
            "tts_fm": "jaxspeech.train.recipes.tts_fm",
            "whisper_asr": "jaxspeech.train.recipes.whisper_asr"}


def get(name: str) -> ModuleType:
    if name not in _RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(_RECIPES)}")
    return importlib.import_module(_RECIPES[name])


def for_workdir(workdir: str | os.PathLike) -> ModuleType:
    """The recipe that trained ``workdir`` (from its saved config)."""
    return get(read_saved_config(workdir).recipe)
