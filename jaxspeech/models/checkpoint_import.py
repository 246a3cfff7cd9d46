"""Shared by the checkpoint importers: reading a transformers checkpoint directory's weights, checking
tensors against the expected ones, filling params."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

SAFETENSORS = "model.safetensors"
TORCH_WEIGHTS = "pytorch_model.bin"


class CheckpointError(ValueError):
    """A checkpoint's tensors do not match its config (missing, unexpected or mis-shaped)."""


def _read_safetensors(files: list[str]) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    tensors = {}
    for file in files:
        # framework="flax": numpy's has no bfloat16 (SmolLM2 ships bf16); np.asarray keeps ml_dtypes' bf16.
        with safe_open(file, framework="flax") as f:
            for name in f.keys():
                tensors[name] = np.asarray(f.get_tensor(name))
    return tensors


def _read_torch(files: list[str]) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"{files[0]} is a PyTorch checkpoint and reading it needs torch, which is not installed; "
            "install torch or convert the checkpoint to model.safetensors"
        ) from None
    tensors = {}
    for file in files:
        for name, tensor in torch.load(file, map_location="cpu", weights_only=True).items():
            tensor = tensor.detach()
            # numpy has no bfloat16: go through float32, then to ml_dtypes' bfloat16 that jax uses.
            tensors[name] = (tensor.float().numpy().astype(jnp.bfloat16) if tensor.dtype == torch.bfloat16
                             else tensor.numpy())  # fmt: skip
    return tensors


def _weight_files(path: str, single: str) -> list[str] | None:
    if os.path.exists(os.path.join(path, single)):
        return [os.path.join(path, single)]
    index = os.path.join(path, single + ".index.json")
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(path, shard) for shard in shards]
    return None


def read_config_json(path: str | os.PathLike, family: str) -> dict:
    """The config.json of transformers checkpoint directory ``path`` as a dict; FileNotFoundError naming
    ``family`` (e.g. "Whisper") when there is none."""
    config_file = os.path.join(os.fspath(path), "config.json")
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"{os.fspath(path)} has no config.json; is it a transformers {family} checkpoint "
                                "directory?")  # fmt: skip
    with open(config_file, encoding="utf-8") as f:
        return json.load(f)


def write_transformers_checkpoint(path: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                                  expected: Mapping[str, tuple], config_of_dtype: Callable[[str], dict]) -> None:
    """Writes ``tensors`` {name: array} as model.safetensors and ``config_of_dtype(dtype name)`` as
    config.json into ``path``. Raises CheckpointError unless the tensors are exactly ``expected``
    {name: shape}, ValueError when they mix dtypes."""
    from safetensors.numpy import save_file

    if {name: tuple(t.shape) for name, t in tensors.items()} != {name: tuple(s) for name, s in expected.items()}:
        raise CheckpointError("params do not match the config they are saved with")
    dtypes = {str(t.dtype) for t in tensors.values()}
    if len(dtypes) != 1:
        raise ValueError(f"params mix dtypes {sorted(dtypes)}; cast them to one before saving")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config_of_dtype(dtypes.pop()), f, indent=2, sort_keys=True)
    save_file(dict(tensors), os.path.join(path, SAFETENSORS), metadata={"format": "pt"})


def read_transformers_weights(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], list[str]]:
    """({tensor name: array}, files read) of a transformers checkpoint directory: model.safetensors
    (or its sharded index), else pytorch_model.bin (or its index; needs torch). Raises
    FileNotFoundError when there is neither."""
    path = os.fspath(path)
    if files := _weight_files(path, SAFETENSORS):
        return _read_safetensors(files), files
    if files := _weight_files(path, TORCH_WEIGHTS):
        return _read_torch(files), files
    raise FileNotFoundError(f"{path} has no {SAFETENSORS} or {TORCH_WEIGHTS} (nor a sharded index of either)")


def _summarise(items: list[str], limit: int = 20) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items) - limit} more)"


def tensor_problems(
    expected: Mapping[str, tuple], given: Mapping[str, tuple], *, ignored: Iterable[str] = ()
) -> list[str]:
    """What is wrong with ``given`` {name: shape} against ``expected`` {name: shape}: the missing,
    mis-shaped (expected vs actual) and unexpected tensors, each a sentence; [] when they agree.
    ``ignored`` names may be present without being expected."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected) - set(ignored))
    common = sorted(set(expected) & set(given))
    mismatched = [f"{name} expected {tuple(expected[name])} got {tuple(given[name])}"
                  for name in common if tuple(given[name]) != tuple(expected[name])]  # fmt: skip
    problems = []
    if missing:
        problems.append(f"missing tensors: {_summarise(missing)}")
    if mismatched:
        problems.append(f"shape mismatches: {_summarise(mismatched)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_summarise(unexpected)}")
    return problems


def filled(abstract: nnx.State, values: Mapping[tuple, jax.Array]) -> nnx.State:
    """``abstract`` (params of ShapeDtypeStructs) with every leaf replaced by ``values[path]``."""
    pure: dict = {}
    for path, value in values.items():
        node = pure
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    nnx.replace_by_pure_dict(abstract, pure)
    return abstract


class Layout(NamedTuple):
    """How a torch tensor is stored as one of our params: ``to_ours(torch array)`` and
    ``torch_shape(our shape)`` (for error messages in the checkpoint's own terms)."""

    to_ours: Callable[[np.ndarray], np.ndarray]
    torch_shape: Callable[[tuple], tuple]


SAME = Layout(lambda v: v, lambda shape: shape)
# Linear [out, in] <-> [in, out]; Conv1d [out, in, k] <-> [k, in, out]
REVERSED = Layout(lambda v: np.transpose(v, tuple(range(v.ndim))[::-1]), lambda shape: shape[::-1])


def params_from_torch(abstract: nnx.State, tensors: Mapping[str, np.ndarray],
                      torch_tensor: Callable[[tuple], tuple[str, Layout] | None], *, describe: str,
                      ignored: Iterable[str] = (), dtype=jnp.float32) -> nnx.State:
    """``abstract`` (params of ShapeDtypeStructs) with every param read from ``tensors`` {torch name:
    array}: ``torch_tensor(path)`` names a param's tensor and its :class:`Layout`, or None for a param
    the checkpoint has no tensor for by design (filled with zeros). ``ignored`` tensors may be present
    and are not read. Raises CheckpointError ``"{describe}: ..."`` listing every missing, unexpected
    and mis-shaped tensor (torch layout). ``dtype`` casts every param (None keeps the stored dtypes)."""
    expected, zeros = {}, {}
    for path, variable in nnx.to_flat_state(abstract):
        shape = tuple(variable.get_value().shape)
        mapped = torch_tensor(path)
        if mapped is None:
            zeros[path] = jnp.zeros(shape, variable.get_value().dtype)
            continue
        name, layout = mapped
        expected[name] = (path, layout, tuple(layout.torch_shape(shape)))
    problems = tensor_problems({name: shape for name, (_, _, shape) in expected.items()},
                               {name: np.shape(value) for name, value in tensors.items()}, ignored=ignored)
    if problems:
        raise CheckpointError(f"{describe}: " + "; ".join(problems))
    flat = {path: jnp.asarray(np.ascontiguousarray(layout.to_ours(np.asarray(tensors[name]))), dtype=dtype)
            for name, (path, layout, _) in expected.items()}
    return filled(abstract, {**flat, **zeros})
