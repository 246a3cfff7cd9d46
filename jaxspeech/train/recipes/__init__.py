"""Recipes: what ``jaxspeech train | evaluate | transcribe | synthesize`` run for a config's ``recipe``.

A recipe module builds a :class:`Recipe` declaring what it offers and registers it at import:

    RECIPE = recipes.register(recipes.Recipe("ctc_asr", train, evaluate=evaluate, transcribe=transcribe,
                                              options={"evaluate": add_beam_size, "transcribe": add_beam_size}))

The CLI dispatches on that declaration, never on function signatures. Built-in recipes are
imported on first lookup; other packages add theirs through the ``jaxspeech.recipes`` entry-point
group (``name = "package.module"``, a module that registers a recipe when imported).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

from jaxspeech.registry import Registry
from jaxspeech.train.config import read_saved_config

CAPABILITIES = ("train", "evaluate", "transcribe", "synthesize")
ENTRY_POINT_GROUP = "jaxspeech.recipes"
_BUILTIN_MODULES = ("ctc_asr", "tts_fm", "univoice", "vocoder", "whisper_asr")
AddArguments = Callable[[argparse.ArgumentParser | argparse._ArgumentGroup], None]


class RecipeError(ValueError):
    """An unknown recipe, or a capability a recipe does not offer."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What a model family offers from a workdir.

    train(config, workdir); evaluate(workdir, *, split, **options) -> dict;
    transcribe(workdir, files, **options) -> [text]; synthesize(workdir, texts, **options) ->
    (waveforms, sample_rate). options: capability -> ``add_arguments(parser)`` declaring that
    capability's own command-line options (argparse dests = the keyword names; default None, so
    only what the user gave is passed).
    """

    name: str
    train: Callable[[Any, str], None]
    evaluate: Callable[..., dict] | None = None
    transcribe: Callable[..., list[str]] | None = None
    synthesize: Callable[..., tuple[list, int]] | None = None
    options: Mapping[str, AddArguments] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        unknown = sorted(set(self.options) - set(CAPABILITIES))
        if unknown:
            raise RecipeError(f"recipe {self.name!r} declares options for unknown capabilities {unknown}")
        missing = sorted(c for c in self.options if getattr(self, c) is None)
        if missing:
            raise RecipeError(f"recipe {self.name!r} declares options for {missing}, which it does not offer")

    def offers(self) -> tuple[str, ...]:
        return tuple(c for c in CAPABILITIES if getattr(self, c) is not None)

    def require(self, capability: str) -> Callable:
        """The function of ``capability``; a one-line RecipeError when the recipe does not offer it."""
        if capability not in CAPABILITIES:
            raise RecipeError(f"unknown capability {capability!r}; known: {', '.join(CAPABILITIES)}")
        fn = getattr(self, capability)
        if fn is None:
            offered = ", ".join(self.offers())
            raise RecipeError(f"recipe {self.name!r} does not offer {capability} (it offers: {offered})")
        return fn

    def add_arguments(self, capability: str, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        """Declares ``capability``'s own options on ``parser`` (nothing when it has none)."""
        if capability in self.options:
            self.options[capability](parser)


def add_beam_size(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--beam-size`` for a recognizer's evaluate and transcribe (dest ``beam_size``; 0 = greedy)."""
    parser.add_argument("--beam-size", type=int, default=None, help="0 = greedy (default: the config's)")


_REGISTRY: Registry[Recipe] = Registry("recipe", RecipeError)


def register(recipe: Recipe) -> Recipe:
    """Adds ``recipe`` under its name; a second, different recipe of the same name is an error."""
    return _REGISTRY.register(recipe.name, recipe)


def _load_all() -> None:
    for name in _BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(entry.value)


def known() -> list[str]:
    """Names of every recipe (built-in, entry-point and already registered ones)."""
    _load_all()
    return _REGISTRY.names()


def get(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name lists the known ones."""
    if name not in _REGISTRY:
        if name in _BUILTIN_MODULES:
            importlib.import_module(f"{__name__}.{name}")
        else:  # entry points, and every name for the error message
            _load_all()
    return _REGISTRY.get(name)


def for_workdir(workdir: str | os.PathLike) -> Recipe:
    """The recipe that trained ``workdir`` (from its saved config)."""
    return get(read_saved_config(workdir).recipe)
