"""Multi-process setup and host -> global-array batch placement."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Sharding


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Joins a multi-process JAX job; call before any other JAX call touches a device.

    CPU collectives go through gloo so that processes on one machine (tests, CI) can all-reduce.
    The option is set unconditionally: it only configures the CPU client, and asking which
    platform is in use would initialise the backends before `jax.distributed.initialize`.
    """
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id {process_id} is not in [0, {num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )


def put_batch(batch: Mapping[str, np.ndarray], sharding: Sharding) -> dict[str, jax.Array]:
    """This process's share of a batch (dict of [N_local, ...]) -> global arrays [N_global, ...], each
    sharded over its leading dim (the batch rows B for most; a packing plan's ``pack_owner`` has the
    packed rows R).

    N_global = N_local * process_count for a batch sharding over all processes; every process
    must pass the same keys and shapes.
    """
    arrays = {name: np.asarray(x) for name, x in batch.items()}
    scalars = [name for name, x in arrays.items() if x.ndim == 0]
    if scalars:
        raise ValueError(f"batch arrays need a leading (batch) dim: {scalars} are scalars")
    return {
        name: jax.make_array_from_process_local_data(sharding, x) for name, x in arrays.items()
    }
