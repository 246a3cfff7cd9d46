"""A toy training run (MLP regression with dropout on synthetic data) through the real loop.

Run as a subprocess by the tests: resumption after SIGKILL, 8 simulated devices, 2 processes.

    python tests/train/toy_training.py --workdir /tmp/run --num-steps 12 --checkpoint-every 3 \
        [--mesh data=4,fsdp=2] [--coordinator 127.0.0.1:PORT --num-processes 2 --process-id 0]

If <workdir>/KILL_AT_STEP exists, the run deletes it and SIGKILLs itself after that many steps,
so running the identical command again must resume.
"""

from __future__ import annotations

import argparse
import os
import signal

import grain
import numpy as np

GLOBAL_BATCH = 16
IN_DIM, HIDDEN, OUT_DIM = 4, 16, 2
RULES = (("dense1/kernel", (None, "fsdp")), ("dense2/kernel", ("fsdp", None)))


class SyntheticRegression(grain.DatasetIterator):
    """A grain iterator (its position is checkpointed): batch i is a pure function of (seed, i); this process gets rows
    [process_id * B_local, (process_id + 1) * B_local) of it. Kills its own process with
    SIGKILL when asked for batch int(<kill_file>) (i.e. after that many train steps), deleting
    kill_file first."""

    def __init__(self, seed, process_id, num_processes, kill_file=None):
        super().__init__()
        self.seed, self.index = seed, 0
        self.kill_at = None
        if kill_file is not None and os.path.exists(kill_file):
            self.kill_at, self.kill_file = int(open(kill_file).read()), kill_file
        local = GLOBAL_BATCH // num_processes
        self.rows = slice(process_id * local, (process_id + 1) * local)
        teacher = np.random.default_rng(seed)
        self.w1 = teacher.normal(size=(IN_DIM, HIDDEN))
        self.w2 = teacher.normal(size=(HIDDEN, OUT_DIM)) / 4

    def __next__(self):
        if self.index == self.kill_at:
            os.remove(self.kill_file)
            os.kill(os.getpid(), signal.SIGKILL)
        rng = np.random.default_rng([self.seed, self.index])
        x = rng.normal(size=(GLOBAL_BATCH, IN_DIM))
        y = np.tanh(x @ self.w1) @ self.w2 + 0.1 * rng.normal(size=(GLOBAL_BATCH, OUT_DIM))
        self.index += 1
        return {"x": x[self.rows].astype(np.float32), "y": y[self.rows].astype(np.float32)}

    def get_state(self):
        return {"index": self.index, "rows": [self.rows.start, self.rows.stop]}

    def set_state(self, state):
        if state["rows"] != [self.rows.start, self.rows.stop]:
            raise ValueError(f"iterator state of rows {state['rows']} given to rows {self.rows}")
        self.index = int(state["index"])


def init_params(key):
    import jax

    k1, k2 = jax.random.split(key)
    return {
        "dense1": {
            "kernel": jax.random.normal(k1, (IN_DIM, HIDDEN)) / np.sqrt(IN_DIM),
            "bias": jax.numpy.zeros((HIDDEN,)),
        },
        "dense2": {
            "kernel": jax.random.normal(k2, (HIDDEN, OUT_DIM)) / np.sqrt(HIDDEN),
            "bias": jax.numpy.zeros((OUT_DIM,)),
        },
    }


def loss_fn(params, batch, key):
    """Per-example mean squared error of an MLP with dropout 0.1 on the hidden layer."""
    import jax
    import jax.numpy as jnp

    hidden = jnp.tanh(batch["x"] @ params["dense1"]["kernel"] + params["dense1"]["bias"])
    keep = jax.random.bernoulli(key, 0.9, hidden.shape)
    hidden = jnp.where(keep, hidden / 0.9, 0.0)
    pred = hidden @ params["dense2"]["kernel"] + params["dense2"]["bias"]
    mse = jnp.mean(jnp.square(pred - batch["y"]))
    return mse, {"mse": mse}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num-steps", type=int, default=12)
    parser.add_argument("--checkpoint-every", type=int, default=3)
    parser.add_argument("--mesh", default="data=-1,fsdp=1")
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    args = parser.parse_args()

    from jaxspeech.train import distributed

    if args.coordinator:
        distributed.initialize_distributed(args.coordinator, args.num_processes, args.process_id)

    import jax
    import optax

    from jaxspeech import train as jst

    mesh = jst.make_mesh({k: int(v) for k, v in (a.split("=") for a in args.mesh.split(","))})
    optimizer = optax.adam(3e-2)
    state = jst.create_train_state(init_params(jax.random.key(0)), optimizer, jax.random.key(1))
    step_fn, shardings = jst.compile_train_step(
        jst.make_train_step(loss_fn, optimizer), state, mesh, RULES
    )
    checkpointer = jst.Checkpointer(os.path.join(args.workdir, "checkpoints"), keep=2)
    writer = jst.MetricWriter(args.workdir)
    jst.train(
        state=jst.place_state(state, shardings),
        step_fn=step_fn,
        batches=SyntheticRegression(
            7, args.process_id, args.num_processes, os.path.join(args.workdir, "KILL_AT_STEP")
        ),
        num_steps=args.num_steps,
        batch_sharding=jst.batch_sharding(mesh),
        checkpointer=checkpointer,
        writer=writer,
        log_every=1,
        checkpoint_every=args.checkpoint_every,
        show_progress=False,
    )
    checkpointer.close()
    writer.close()
    print(f"devices={jax.device_count()} processes={jax.process_count()} mesh={dict(mesh.shape)}")


if __name__ == "__main__":
    main()
