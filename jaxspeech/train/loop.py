"""The train loop: resume, step, log, checkpoint, abort on persistent non-finite losses."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grain
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, Sharding

from jaxspeech.data.manifest import SkipCounter
from jaxspeech.train.checkpoint import Checkpointer
from jaxspeech.train.distributed import put_batch
from jaxspeech.train.gan_step import GanState
from jaxspeech.train.mesh import batch_sharding
from jaxspeech.train.metrics import MetricWriter
from jaxspeech.train.progress import Progress
from jaxspeech.train.state import TrainState
from jaxspeech.train.step import TrainStep

log = logging.getLogger(__name__)
State = TrainState | GanState  # what the loop trains: one network, or a generator and its discriminator


class NonFiniteLossError(RuntimeError):
    """Too many consecutive train steps had a non-finite loss or gradient."""


def train(
    *,
    state: State,
    step_fn: TrainStep,
    batches: Iterator[Mapping[str, Any]],
    num_steps: int,
    batch_sharding: Sharding,
    checkpointer: Checkpointer | None = None,
    writer: MetricWriter | None = None,
    log_every: int = 50,
    checkpoint_every: int = 1000,
    max_nonfinite_streak: int = 20,
    eval_fn: Callable[[State], Mapping[str, Any]] | None = None,
    eval_every: int = 0,
    show_progress: bool = True,
) -> State:
    """Trains until `state.step == num_steps` and returns the final state.

    state: step-0 TrainState (or GanState) already on the mesh (`place_state`); also the restore
      template.
    step_fn: `compile_train_step`'s jitted `(state, batch, key) -> (state, metrics)`; the state
      is donated. The key of step s is `jax.random.fold_in(state.rng, s)`, so a resumed run
      draws the same keys as an uninterrupted one.
    batches: iterator of per-process batches (dicts of numpy [B_local, ...]); a grain
      ``DatasetIterator`` (``jaxspeech.data``'s batch sources are) has its position checkpointed
      with the state and restored with it.
    batch_sharding: how `put_batch` assembles the global batch (`mesh.batch_sharding`).
    checkpointer: when given, the newest readable checkpoint (state + iterator position) is
      restored first, so running the same command again resumes; saves every
      `checkpoint_every` steps (0: never) and at the end, and waits for async saves on exit.
    writer: gets metrics (+ `steps_per_second`) every `log_every` steps and at the last step;
      metrics leave the device only then.
    max_nonfinite_streak: NonFiniteLossError when this many consecutive steps were skipped
      (checked at log steps over all steps since the previous log).
    eval_fn: `eval_fn(state) -> {name: scalar}`, run every `eval_every` steps, logged as
      "eval/<name>".
    show_progress: tqdm bar on process 0.
    """
    for name, value in (("log_every", log_every), ("max_nonfinite_streak", max_nonfinite_streak)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if checkpoint_every < 0 or eval_every < 0:
        raise ValueError(f"checkpoint_every and eval_every must be >= 0, got {checkpoint_every}, {eval_every}")
    if eval_every and eval_fn is None:
        raise ValueError("eval_every is set but eval_fn is None")

    data = batches if isinstance(batches, grain.DatasetIterator) else None  # position checkpointed with the state
    if checkpointer is not None:
        restored = checkpointer.restore(state, data)
        if restored is not None:
            state = restored
    start = int(jax.device_get(state.step))
    if start > num_steps:
        raise ValueError(f"restored step {start} is past num_steps={num_steps}")
    if start:
        log.info("resuming at step %d", start)

    step_key = jax.jit(jax.random.fold_in)
    progress = Progress(num_steps, start, enabled=show_progress and jax.process_index() == 0)
    streak_max = None  # device-side max of nonfinite_streak since the last log, read at log steps
    last_log_step, last_log_time = start, time.perf_counter()
    try:
        for step in range(start, num_steps):
            try:
                batch = next(batches)
            except StopIteration:
                raise RuntimeError(
                    f"the batch iterator ran out at step {step} of {num_steps}; make it repeat"
                ) from None
            key = step_key(state.rng, step)
            state, metrics = step_fn(state, put_batch(batch, batch_sharding), key)
            done = step + 1
            streak = metrics["nonfinite_streak"]
            streak_max = streak if streak_max is None else jnp.maximum(streak_max, streak)

            if done % log_every == 0 or done == num_steps:
                host_metrics = jax.device_get(metrics)
                now = time.perf_counter()
                host_metrics["steps_per_second"] = (done - last_log_step) / (now - last_log_time)
                last_log_step, last_log_time = done, now
                if writer is not None:
                    writer.scalars(done, host_metrics)
                progress.update(done, host_metrics)
                worst_streak, streak_max = int(jax.device_get(streak_max)), None
                if worst_streak >= max_nonfinite_streak:
                    raise NonFiniteLossError(
                        f"{worst_streak} consecutive steps up to step {done} had a non-finite "
                        f"loss or gradient (max_nonfinite_streak={max_nonfinite_streak}; last "
                        f"loss {host_metrics['loss']}); those updates were skipped. Lower the "
                        "learning rate, clip gradients or check the data; the checkpoints "
                        "before the streak are kept."
                    )
            else:
                progress.update(done)

            if eval_every and done % eval_every == 0:
                eval_metrics = {f"eval/{k}": v for k, v in eval_fn(state).items()}
                if writer is not None:
                    writer.scalars(done, jax.device_get(eval_metrics))
            if checkpointer is not None and checkpoint_every and done % checkpoint_every == 0:
                checkpointer.save(done, state, data)
        if checkpointer is not None:
            checkpointer.save(num_steps, state, data)
    finally:
        progress.close()
        if writer is not None:
            writer.flush()
        if checkpointer is not None:
            checkpointer.wait()
    return state


def train_in_workdir(
    config: Any,
    workdir: str,
    *,
    state: State,
    step_fn: TrainStep,
    batches: Iterator[Mapping[str, Any]],
    mesh: Mesh,
    writer: MetricWriter,
    eval_fn: Callable[[State], Mapping[str, Any]] | None,
    skips: SkipCounter,
) -> State:
    """``train`` with a recipe config's ``train.*`` settings and checkpoints in ``workdir/checkpoints``.

    Resumes from the newest checkpoint; on exit (normal or not) closes the checkpointer and the
    writer and logs the data skip summary.
    """
    t = config.train
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep=t.keep_checkpoints)
    started = time.time()
    try:
        state = train(state=state, step_fn=step_fn, batches=batches, num_steps=t.steps,
                      batch_sharding=batch_sharding(mesh), checkpointer=checkpointer, writer=writer,
                      log_every=t.log_every, checkpoint_every=t.checkpoint_every,
                      max_nonfinite_streak=t.max_nonfinite_streak, eval_fn=eval_fn, eval_every=t.eval_every)
    finally:
        checkpointer.close()
        writer.close()
        skips.summary()
    log.info("trained to step %d in %.0f s", t.steps, time.time() - started)
    return state
