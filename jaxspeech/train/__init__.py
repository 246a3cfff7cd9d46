"""Training: state, mesh and sharding rules, step builders (one loss; a GAN's two), loop, checkpoints,
metrics, progress.

A model enters as `loss_fn(params, batch, key) -> (loss, metrics)` plus an optax optimizer:

    mesh = make_mesh({"data": -1, "fsdp": 1})
    state = create_train_state(params, optimizer, jax.random.key(0))
    step_fn, shardings = compile_train_step(make_train_step(loss_fn, optimizer), state, mesh, rules)
    state = train(state=place_state(state, shardings), step_fn=step_fn, batches=batches,
                  num_steps=10_000, batch_sharding=batch_sharding(mesh),
                  checkpointer=Checkpointer(workdir / "checkpoints"), writer=MetricWriter(workdir))
"""

from jaxspeech.train.checkpoint import Checkpointer
from jaxspeech.train.distributed import initialize_distributed, put_batch
from jaxspeech.train.gan_step import GanState, compile_gan_train_step, make_gan_train_step
from jaxspeech.train.loop import NonFiniteLossError, train
from jaxspeech.train.mesh import batch_sharding, make_mesh, param_shardings, replicated
from jaxspeech.train.metrics import MetricWriter, as_rgb, plot_loss_curve, plot_mel, read_metrics
from jaxspeech.train.progress import Progress
from jaxspeech.train.state import TrainState, create_train_state
from jaxspeech.train.step import (
    TrainProgress,
    cast_floating,
    compile_train_step,
    make_train_step,
    place_state,
    split_micro_batches,
    train_state_shardings,
)

__all__ = [
    "Checkpointer",
    "GanState",
    "MetricWriter",
    "NonFiniteLossError",
    "Progress",
    "TrainProgress",
    "TrainState",
    "as_rgb",
    "batch_sharding",
    "cast_floating",
    "compile_gan_train_step",
    "compile_train_step",
    "create_train_state",
    "initialize_distributed",
    "make_gan_train_step",
    "make_mesh",
    "make_train_step",
    "param_shardings",
    "place_state",
    "plot_loss_curve",
    "plot_mel",
    "put_batch",
    "read_metrics",
    "replicated",
    "split_micro_batches",
    "train",
    "train_state_shardings",
]
