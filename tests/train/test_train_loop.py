"""train(): in-process resumption, non-finite abort, eval logging, exhausted iterator."""

import itertools

import jax
import numpy as np
import optax
import pytest
from toy_training import RULES, SyntheticRegression, init_params, loss_fn

from jaxspeech import train as jst


def run(workdir, num_steps, batches=None, *, checkpoint_every=4, **kwargs):
    """Trains the toy MLP in `workdir` (resuming from its checkpoints); returns the final state."""
    mesh = jst.make_mesh({"data": -1})
    optimizer = optax.adam(3e-2)
    state = jst.create_train_state(init_params(jax.random.key(0)), optimizer, jax.random.key(1))
    step_fn, shardings = jst.compile_train_step(jst.make_train_step(loss_fn, optimizer), state, mesh, RULES)
    checkpointer = jst.Checkpointer(workdir / "checkpoints")
    writer = jst.MetricWriter(workdir)
    try:
        return jst.train(
            state=jst.place_state(state, shardings),
            step_fn=step_fn,
            batches=batches or SyntheticRegression(7, 0, 1),
            num_steps=num_steps,
            batch_sharding=jst.batch_sharding(mesh),
            checkpointer=checkpointer,
            writer=writer,
            checkpoint_every=checkpoint_every,
            show_progress=False,
            **{"log_every": 1, **kwargs},
        )
    finally:
        checkpointer.close()
        writer.close()


def losses(workdir):
    return [(r["step"], r["loss"]) for r in jst.read_metrics(workdir / "metrics.jsonl")]


def test_running_again_resumes_exactly(tmp_path):
    straight = run(tmp_path / "straight", 8)
    run(tmp_path / "split", 5)  # checkpoints at 4 and 5
    resumed = run(tmp_path / "split", 8)
    assert losses(tmp_path / "split") == losses(tmp_path / "straight")
    assert [s for s, _ in losses(tmp_path / "split")] == list(range(1, 9))
    np.testing.assert_array_equal(resumed.params["dense1"]["kernel"], straight.params["dense1"]["kernel"])
    assert jst.Checkpointer(tmp_path / "split" / "checkpoints").all_steps() == [4, 5, 8]


class PoisonedBatches(SyntheticRegression):
    """Targets are NaN for the batch indices in `poisoned`."""

    def __init__(self, poisoned):
        super().__init__(7, 0, 1)
        self.poisoned = set(poisoned)

    def __next__(self):
        index = self.index
        batch = super().__next__()
        if index in self.poisoned:
            batch["y"] = np.full_like(batch["y"], np.nan)
        return batch


def test_nonfinite_streak_aborts_even_if_it_ended_between_logs(tmp_path):
    # steps 2-4 are non-finite (streak 3), step 5 is finite again; the log at step 5 sees the
    # maximum streak since the previous log, not just the current one.
    with pytest.raises(jst.NonFiniteLossError, match="3 consecutive steps up to step 5"):
        run(tmp_path, 10, PoisonedBatches({1, 2, 3}), log_every=5, max_nonfinite_streak=3, checkpoint_every=1)
    records = jst.read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [5] and records[0]["nonfinite_streak"] == 0
    checkpointer = jst.Checkpointer(tmp_path / "checkpoints")
    assert checkpointer.all_steps()[-1] == 4  # saved before the check at step 5; nothing after


def test_short_streak_is_skipped_and_training_finishes(tmp_path):
    state = run(tmp_path, 6, PoisonedBatches({1, 2}), max_nonfinite_streak=3)
    records = jst.read_metrics(tmp_path / "metrics.jsonl")
    assert [r["skipped"] for r in records] == [0, 1, 1, 0, 0, 0]
    assert [r["nonfinite_streak"] for r in records] == [0, 1, 2, 0, 0, 0]
    assert int(state.step) == 6 and np.isfinite(records[-1]["loss"])


def test_eval_metrics_are_logged_with_prefix(tmp_path):
    evaluated_at = []

    def eval_fn(state):
        evaluated_at.append(int(state.step))
        return {"param_norm": optax.tree.norm(state.params)}

    run(tmp_path, 4, eval_fn=eval_fn, eval_every=2, log_every=4)
    records = jst.read_metrics(tmp_path / "metrics.jsonl")
    assert evaluated_at == [2, 4]
    assert "eval/param_norm" in records[0] and records[0]["step"] == 2
    assert "eval/param_norm" in records[1] and "loss" in records[1]  # step 4: both


def test_exhausted_iterator_and_bad_arguments_raise(tmp_path):
    class Three(SyntheticRegression):
        def __next__(self):
            if self.index == 3:
                raise StopIteration
            return super().__next__()

    with pytest.raises(RuntimeError, match="ran out at step 3 of 5"):
        run(tmp_path / "a", 5, Three(7, 0, 1))
    with pytest.raises(ValueError, match="eval_fn is None"):
        run(tmp_path / "b", 5, eval_every=2)
    assert list(itertools.islice(SyntheticRegression(7, 0, 2), 1))[0]["x"].shape == (8, 4)
