"""Shared by the checkpoint importers: checking tensors against the expected ones, filling params."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import jax
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
