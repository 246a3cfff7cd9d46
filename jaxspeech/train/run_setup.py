"""What every recipe's training and restoring needs, in one place: the optimizer from the config,
the step-0 and restored train states, workdir files that must not change under a checkpoint, and
the mesh with its bucketed batches.

The global batch is a function of the config alone: every bucket's rows are a multiple of
``data.row_multiple``, and a mesh whose batch devices x ``train.accum_steps`` do not divide it is
an error, so the same config sees the same batches on 1 device and on 8.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import ml_collections
import optax
from jax.sharding import Mesh

from jaxspeech.data.bucketing import make_buckets
from jaxspeech.data.packing import PackingSpec
from jaxspeech.data.pipeline import SpeechBatches, SpeechDataset, collate
from jaxspeech.train.checkpoint import restore_latest
from jaxspeech.train.mesh import check_row_multiple, make_mesh
from jaxspeech.train.optim import adamw_warmup_cosine
from jaxspeech.train.state import TrainState, create_train_state

T = TypeVar("T")


def optimizer_from_config(config: ml_collections.ConfigDict, *, decay_mask: Any = None) -> optax.GradientTransformation:
    """AdamW on a warmup-cosine schedule over ``train.steps`` with ``config.optim``'s settings."""
    return adamw_warmup_cosine(config.optim, config.train.steps, decay_mask=decay_mask)


def initial_state(config: ml_collections.ConfigDict, params: Any, optimizer: optax.GradientTransformation, *,
                  ema: bool = False) -> TrainState:
    """The step-0 state of ``params`` (with their moving average when ``ema``); the run's key is
    ``jax.random.key(config.seed)``."""
    return create_train_state(params, optimizer, jax.random.key(config.seed), ema=ema)


def restore_state(workdir: str, config: ml_collections.ConfigDict, params: Any,
                  optimizer: optax.GradientTransformation, *, ema: bool = False) -> TrainState:
    """The latest readable checkpoint of ``workdir`` (a corrupt latest falls back to the one before);
    ``params`` (e.g. a fresh init) only give the tree and shapes; ``ema``: the run keeps a moving average."""
    return restore_latest(workdir, initial_state(config, params, optimizer, ema=ema))


def _save_json(value: Any, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)


def _load_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def workdir_file(workdir: str, name: str, build: Callable[[], T], *, load: Callable[[str], T] = _load_json,
                 save: Callable[[T, str], None] = _save_json) -> T:
    """``workdir/name`` read back when it exists (a resumed run must keep the vocabulary its
    checkpoint was trained with), else ``build()`` saved there. JSON unless ``load``/``save`` say."""
    path = os.path.join(workdir, name)
    if os.path.exists(path):
        return load(path)
    value = build()
    save(value, path)
    return value


def mesh_from_config(config: ml_collections.ConfigDict) -> Mesh:
    """The ``config.mesh`` axes over every device, checked against ``data.row_multiple``."""
    mesh = make_mesh({"data": config.mesh.data, "fsdp": config.mesh.fsdp})
    check_row_multiple(config.data.row_multiple, mesh, config.train.accum_steps)
    return mesh


def bucketed_batches(config: ml_collections.ConfigDict, dataset: SpeechDataset, *, collate=collate,
                     length_multiple: int = 16, label_multiple: int = 16, packing: PackingSpec | None = None
                     ) -> SpeechBatches:
    """This process's share of the training batches: buckets from ``config.data`` (``max_frames``,
    ``num_buckets``, rows a multiple of ``row_multiple``), shuffled per epoch with ``config.seed``;
    ``packing``: batches planned to fill packed rows (``data.packing``)."""
    d = config.data
    buckets = make_buckets(dataset.lengths, max_frames=d.max_frames, num_buckets=d.num_buckets,
                           length_multiple=length_multiple, row_multiple=d.row_multiple)
    return SpeechBatches(dataset, buckets, seed=config.seed, process_index=jax.process_index(),
                         process_count=jax.process_count(), num_threads=d.num_threads,
                         label_multiple=label_multiple, collate=collate, packing=packing)
