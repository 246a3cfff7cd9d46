"""Experiment configs: Python files whose ``get_config()`` returns a locked ConfigDict.

``load_config("configs/asr_ctc_tiny.py", ["--config.optim.lr=1e-3"])`` imports the file,
locks the dict (so a misspelt key fails loudly), and applies overrides parsed to the type of
the field they replace.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
from collections.abc import Sequence

import ml_collections

_PREFIX = "--config."


class ConfigError(ValueError):
    """A config file or an override that cannot be applied."""


def _import_config_file(path: str | os.PathLike) -> ml_collections.ConfigDict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"jaxspeech_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no get_config()")
    return module.get_config()


def _parse_value(raw: str, current):
    """Parses ``raw`` to the type of ``current`` (bools accept true/false, tuples Python literals)."""
    if isinstance(current, bool):
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"expected a boolean, got {raw!r}")
        return raw.lower() in ("true", "1")
    if isinstance(current, str):
        return raw
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError) as e:
        if current is None:  # an unset optional field: a bare word is a string
            return raw
        raise ConfigError(f"cannot parse {raw!r}") from e
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    return value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Applies ``--config.a.b=value`` overrides in place; unknown keys raise ConfigError."""
    for item in overrides:
        if not item.startswith(_PREFIX) or "=" not in item:
            raise ConfigError(f"override must look like --config.key=value, got {item!r}")
        dotted, raw = item[len(_PREFIX):].split("=", 1)
        *parents, leaf = dotted.split(".")
        node = config
        for depth, name in enumerate(parents):
            if name not in node:
                raise ConfigError(f"unknown config key {'.'.join(parents[:depth + 1])!r}")
            node = node[name]
        if leaf not in node:
            raise ConfigError(f"unknown config key {dotted!r}; known here: {sorted(node.keys())}")
        try:
            node[leaf] = _parse_value(raw, node[leaf])
        except (TypeError, ConfigError) as e:
            raise ConfigError(f"cannot set {dotted}={raw!r}: {e}") from e


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Imports ``get_config()`` from ``path``, locks it and applies ``overrides``."""
    config = _import_config_file(path)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"get_config() in {path} must return an ml_collections.ConfigDict")
    config.lock()
    apply_overrides(config, overrides)
    return config


def save_config(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> str:
    """Writes the resolved config as JSON to ``workdir/config.json``; returns the path."""
    path = os.path.join(workdir, "config.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    return path


def read_saved_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """Reads back the config a run saved in its workdir, locked."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{workdir} holds no config.json: is it a jaxspeech workdir?")
    with open(path, encoding="utf-8") as f:
        config = ml_collections.ConfigDict(json.load(f))
    config.lock()
    return config
