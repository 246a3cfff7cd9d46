"""Shared by the checkpoint importers: checking tensors against the expected ones, filling params."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class CheckpointError(ValueError):
    """A checkpoint's tensors do not match its config (missing, unexpected or mis-shaped)."""


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
                      torch_tensor: Callable[[tuple], tuple[str, Layout] | None], *, describe: str) -> nnx.State:
    """``abstract`` (params of ShapeDtypeStructs) with every param read from ``tensors`` {torch name:
    array}: ``torch_tensor(path)`` names a param's tensor and its :class:`Layout`, or None for a param
    the checkpoint has no tensor for by design (filled with zeros). Raises CheckpointError
    ``"{describe}: ..."`` listing every missing, unexpected and mis-shaped tensor (torch layout)."""
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
                               {name: np.shape(value) for name, value in tensors.items()})
    if problems:
        raise CheckpointError(f"{describe}: " + "; ".join(problems))
    flat = {path: jnp.asarray(np.ascontiguousarray(layout.to_ours(np.asarray(tensors[name], np.float32))))
            for name, (path, layout, _) in expected.items()}
    return filled(abstract, {**flat, **zeros})
