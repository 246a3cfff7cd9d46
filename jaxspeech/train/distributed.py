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
    """This process's share of a batch (dict of [B_local, ...]) -> global arrays [B_global, ...].

    B_global = B_local * process_count for a batch sharding over all processes; every process
    must pass the same keys and B_local.
    """
    arrays = {name: np.asarray(x) for name, x in batch.items()}
    sizes = {name: x.shape[0] if x.ndim else None for name, x in arrays.items()}
    if len(set(sizes.values())) > 1 or None in sizes.values():
        raise ValueError(f"batch arrays need one shared leading (batch) dim, got {sizes}")
    return {
        name: jax.make_array_from_process_local_data(sharding, x) for name, x in arrays.items()
    }
