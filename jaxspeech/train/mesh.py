"""Device mesh and sharding rules.

One `jax.sharding.Mesh` with named axes; parameters get a `NamedSharding` from regex rules
over their '/'-joined pytree path (MaxText-style: the rules live in the config, not in the
model); batches are split over the ("data", "fsdp") axes along their leading dim.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

log = logging.getLogger(__name__)

BATCH_AXES = ("data", "fsdp")

# A partition-spec entry: a mesh axis name, a tuple of axis names, or None (not split).
SpecEntry = str | tuple[str, ...] | None
ShardingRules = Sequence[tuple[str, Sequence[SpecEntry]]]


def make_mesh(axes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a mesh over `devices` (default: all of `jax.devices()`, every process).

    `axes` maps axis name -> size, in mesh order; one size may be -1 (all remaining devices).
    "data" and "fsdp" are always present (added with size 1 when missing) so that
    `batch_sharding` and FSDP rules work on any mesh. Axes are `AxisType.Auto`: the compiler
    propagates shardings, so model code needs no sharding annotations.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = dict(axes)
    for name in BATCH_AXES:
        sizes.setdefault(name, 1)
    bad = {k: v for k, v in sizes.items() if not (v == -1 or (isinstance(v, int) and v >= 1))}
    if bad:
        raise ValueError(f"mesh axis sizes must be positive ints or -1, got {bad}")
    wildcards = [k for k, v in sizes.items() if v == -1]
    if len(wildcards) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {wildcards}")
    known = math.prod(v for v in sizes.values() if v != -1)
    if wildcards:
        if len(devices) % known:
            raise ValueError(
                f"{len(devices)} devices cannot be split as {dict(axes)}: "
                f"{len(devices)} is not divisible by {known}"
            )
        sizes[wildcards[0]] = len(devices) // known
    if math.prod(sizes.values()) != len(devices):
        raise ValueError(
            f"mesh {sizes} needs {math.prod(sizes.values())} devices, have {len(devices)}"
        )
    return jax.make_mesh(
        tuple(sizes.values()),
        tuple(sizes),
        axis_types=(AxisType.Auto,) * len(sizes),
        devices=devices,
    )


def path_str(path: Sequence[Any]) -> str:
    """'/'-joined pytree key path, e.g. ('encoder', 'layers', 0, 'kernel') -> 'encoder/layers/0/kernel'."""
    parts = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            parts.append(str(entry.key))
        elif isinstance(entry, jax.tree_util.GetAttrKey):
            parts.append(entry.name)
        elif isinstance(entry, jax.tree_util.SequenceKey):
            parts.append(str(entry.idx))
        elif isinstance(entry, jax.tree_util.FlattenedIndexKey):
            parts.append(str(entry.key))
        else:
            parts.append(str(entry))
    return "/".join(parts)


def _axis_size(mesh: Mesh, entry: SpecEntry) -> int:
    names = (entry,) if isinstance(entry, str) else tuple(entry or ())
    return math.prod(mesh.shape[name] for name in names)


def _check_spec(path: str, spec: Sequence[SpecEntry], mesh: Mesh) -> None:
    for entry in spec:
        names = (entry,) if isinstance(entry, str) else tuple(entry or ())
        unknown = [n for n in names if n not in mesh.shape]
        if unknown:
            raise ValueError(
                f"sharding rule for {path!r} names axes {unknown} that are not in the mesh "
                f"{dict(mesh.shape)}"
            )


def param_shardings(params: Any, rules: ShardingRules, mesh: Mesh) -> Any:
    """NamedSharding for every leaf of `params` (same tree structure).

    rules: sequence of (regex, spec); the regex is `re.search`-ed against the leaf's
    '/'-joined path and the first match wins; no match -> replicated. spec has one entry per
    leading dim (shorter specs leave trailing dims unsplit). A dim whose size is not divisible
    by its axes' total size falls back to unsplit on that dim; all fallbacks of one call are
    logged in one warning.
    """
    compiled = [(re.compile(pattern), tuple(spec)) for pattern, spec in rules]
    fallbacks: list[str] = []

    def sharding_for(path, leaf):
        name = path_str(path)
        shape = np.shape(leaf)
        spec: tuple[SpecEntry, ...] = ()
        for pattern, rule_spec in compiled:
            if pattern.search(name):
                spec = rule_spec
                break
        _check_spec(name, spec, mesh)
        if len(spec) > len(shape):
            raise ValueError(
                f"sharding rule spec {spec} for {name!r} has more entries than the leaf has "
                f"dims (shape {shape})"
            )
        resolved = []
        for dim, entry in enumerate(spec):
            size = _axis_size(mesh, entry)
            if entry is not None and shape[dim] % size:
                fallbacks.append(f"{name} dim {dim} (size {shape[dim]}) over {entry} ({size})")
                entry = None
            resolved.append(entry)
        return NamedSharding(mesh, P(*resolved))

    shardings = jax.tree_util.tree_map_with_path(sharding_for, params)
    if fallbacks:
        log.warning("not divisible, left unsplit: %s", "; ".join(fallbacks))
    return shardings


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dim split over ("data", "fsdp"); other dims unsplit."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def check_row_multiple(row_multiple: int, mesh: Mesh, accum_steps: int) -> None:
    """Raises unless every batch of ``row_multiple`` rows splits into ``accum_steps`` micro-batches
    that each split evenly over the mesh's batch devices ("data" x "fsdp"): the global batch is the
    config's, so the device count must fit it, not the other way round."""
    devices = _axis_size(mesh, BATCH_AXES)
    if not (isinstance(row_multiple, int) and row_multiple >= 1):
        raise ValueError(f"data.row_multiple must be a positive int, got {row_multiple!r}")
    if row_multiple % (devices * accum_steps):
        raise ValueError(
            f"data.row_multiple={row_multiple} cannot be split over {devices} data-parallel devices x "
            f"{accum_steps} accumulation steps: set data.row_multiple to a multiple of {devices * accum_steps}")
