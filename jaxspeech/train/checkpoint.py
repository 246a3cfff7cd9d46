"""Checkpoints: train state + data-iterator state in one orbax step directory.

Layout: `<directory>/<step>/state` (the TrainState pytree, typed PRNG keys included) and
`<directory>/<step>/data/process_<i>-of-<n>.json` (each process's grain iterator state, written
and read by grain's own orbax handler: every process reads a different shard of the data). Saves
are async by default: the arrays are copied to host and the iterator state is written before
`save` returns, so the caller may donate the state to the next step and advance the iterator
immediately; the arrays are written in a background thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from grain.checkpoint import CheckpointRestore, CheckpointSave

log = logging.getLogger(__name__)


def _stored(state: Any, *, keep_none: bool = False) -> Any:
    """What is written for ``state``: a dataclass (TrainState, and the TrainStates inside a GanState)
    as a dict of its fields that are not None, so a field added later with a None default
    (``TrainState.ema``) leaves older checkpoints readable and unused fields take no room.
    ``keep_none``: the layout of checkpoints written with the None fields in (jaxspeech before
    2026-12-03, once ``ema`` existed)."""
    if dataclasses.is_dataclass(state):
        values = {field.name: _stored(getattr(state, field.name), keep_none=keep_none)
                  for field in dataclasses.fields(state)}
        return {name: value for name, value in values.items() if keep_none or value is not None}
    return state


def _layouts(template: Any) -> list[Any]:
    """The layouts a checkpoint of ``template`` may have on disk, the current one first."""
    layouts = [_stored(template)]
    with_none = _stored(template, keep_none=True)
    if jax.tree.structure(with_none) != jax.tree.structure(layouts[0]):
        layouts.append(with_none)
    return layouts


def _rebuilt(template: Any, stored: Any) -> Any:
    """The inverse of :func:`_stored`, into ``template``'s type."""
    if not dataclasses.is_dataclass(template):
        return stored
    return dataclasses.replace(template, **{name: _rebuilt(getattr(template, name), value)
                                            for name, value in stored.items()})


def _abstract(leaf: Any) -> Any:
    """Restore target: shape, dtype and (when the leaf has one) sharding of the template."""
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=getattr(leaf, "sharding", None))


class Checkpointer:
    """Keeps the newest `keep` checkpoints of a run under `directory`.

    Every process of a multi-process job must make the same calls (orbax synchronises them);
    the directory must be shared by all processes.
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, async_save: bool = True):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                enable_async_checkpointing=async_save,
                # Temporary directories left by a process killed mid-save are removed.
                cleanup_tmp_directories=True,
            ),
        )
        self._unreadable: set[int] = set()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(
        self, step: int, state: Any, data: grain.DatasetIterator | None = None, *, force: bool = False
    ) -> bool:
        """Saves `state` (pytree of arrays) and the position of the data iterator `data` as `step`.

        Returns whether a save was started: False when `step` is already saved (e.g. the final
        save of a run whose last step was also a periodic one). A step that `restore` found
        unreadable is replaced. force: save even where orbax's save policy would skip.
        """
        step = int(step)
        if step in self._manager.all_steps():
            if step not in self._unreadable:
                return False
            log.warning("replacing unreadable checkpoint step %d in %s", step, self.directory)
            self._manager.delete(step)
            self._unreadable.discard(step)
        items = {"state": ocp.args.StandardSave(_stored(state))}
        if data is not None:
            items["data"] = CheckpointSave(data)
        return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

    def restore(self, state_template: Any, data: grain.DatasetIterator | None = None) -> Any:
        """Restores the newest readable step into `state_template`'s structure, shapes, dtypes
        and shardings (arrays or ShapeDtypeStructs), and the data iterator `data` to that step's
        position in place (when the step saved one). Returns the state, or None when the
        directory holds no checkpoint.

        A step that fails to restore (deleted or truncated files, ...) is logged as a warning
        naming it and the previous step is tried; if none can be restored, RuntimeError.
        """
        self._manager.wait_until_finished()
        layouts = [jax.tree.map(_abstract, layout) for layout in _layouts(state_template)]
        steps = sorted(self._manager.all_steps(), reverse=True)
        failures = []
        for step in steps:
            errors = []
            for abstract_state in layouts:  # a layout whose tree does not match the files fails fast
                items = {"state": ocp.args.StandardRestore(abstract_state)}
                if data is not None and (self.directory / str(step) / "data").exists():
                    items["data"] = CheckpointRestore(data)
                try:
                    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
                # orbax and tensorstore raise many error types for damaged files; any of them means
                # "this step is unusable", and the fallback is the same.
                except Exception as error:  # noqa: BLE001
                    errors.append(error)
                    continue
                return _rebuilt(state_template, restored.state)
            # tensorstore messages embed whole JSON specs; the head names the damaged file.
            reason = f"{type(errors[0]).__name__}: {str(errors[0])[:400]}"
            log.warning(
                "checkpoint step %d in %s cannot be restored (%s); falling back to the "
                "previous step",
                step,
                self.directory,
                reason,
            )
            self._unreadable.add(step)
            failures.append(f"step {step}: {reason}")
        if failures:
            raise RuntimeError(
                f"no checkpoint in {self.directory} can be restored:\n" + "\n".join(failures)
            )
        return None

    def wait(self) -> None:
        """Blocks until pending async saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.close()


def restore_latest(workdir: str | os.PathLike, template: Any) -> Any:
    """The newest readable train state in ``workdir/checkpoints``, shaped like ``template``.

    A corrupt latest checkpoint falls back to the previous one (see ``Checkpointer.restore``).
    Raises FileNotFoundError when there is none.
    """
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    try:
        restored = checkpointer.restore(template)
    finally:
        checkpointer.close()
    if restored is None:
        raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints: train first")
    return restored
