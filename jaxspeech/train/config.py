"""Experiment configs: Python files whose ``get_config()`` returns a locked ConfigDict.

``load_config("configs/asr_ctc_tiny.py", ["--config.optim.lr=1e-3"])`` imports the file,
locks the dict (so a misspelt key fails loudly), and applies the overrides through
``ml_collections.config_flags`` (parsed to the type of the field they replace).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

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


def config_beside(config_file: str | os.PathLike, name: str) -> ml_collections.ConfigDict:
    """``get_config()`` of the config file ``name`` in the folder of ``config_file`` (a config that builds
    on another: ``config_beside(__file__, "tts_fm_tiny.py")``), unlocked."""
    return _import_config_file(os.path.join(os.path.dirname(os.path.abspath(config_file)), name))


def _first_unknown_key(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> str | None:
    """The dotted key of the first ``--config.a.b=value`` override that names no field."""
    for item in overrides:
        key = item[len(_PREFIX):].split("=", 1)[0]
        node = config
        for part in key.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                return key
            node = node[part]
    return None


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Imports ``get_config()`` from ``path``, locks it and applies ``--config.a.b=value`` overrides
    with ml_collections' own flag machinery (``config_flags``): values are parsed to the type of the
    field they replace, and an unknown key is an error that suggests the near ones."""
    config = _import_config_file(path)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"get_config() in {path} must return an ml_collections.ConfigDict")
    for item in overrides:
        if not item.startswith(_PREFIX) or "=" not in item:
            raise ConfigError(f"override must look like --config.key=value, got {item!r}")
    argv = ["jaxspeech", *overrides]
    flag_values = flags.FlagValues()
    try:  # config_flags parses the overrides as soon as the flag is defined
        config_flags.DEFINE_config_dict("config", config, flag_values=flag_values, lock_config=True, sys_argv=argv)
        flag_values(argv)
    except (AttributeError, KeyError) as e:
        cause = e.args[0] if e.args and isinstance(e.args[0], KeyError) else e  # config_dict wraps KeyErrors
        message = str(cause.args[0] if cause.args else cause).replace("\n", "; ")
        key = _first_unknown_key(config, overrides)
        raise ConfigError(f"unknown config key '{key}' in the overrides of {path}: {message}") from e
    except (flags.Error, TypeError, ValueError) as e:
        raise ConfigError(f"cannot apply the overrides to {path}: {e}") from e
    return flag_values.config


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
