"""Import and export of ``transformers`` Whisper checkpoints (config.json + safetensors / PyTorch).

The NNX parameter tree mirrors transformers' module names, so a tensor name is the parameter
path with flax leaf names mapped to torch ones (kernel/scale/embedding -> weight); Linear
kernels are transposed ([out, in] -> [in, out]) and Conv1d kernels permuted
([out, in, k] -> [k, in, out]). The output projection ``proj_out.weight`` is the token
embedding (tied), so it is accepted only if equal to it and never written.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxspeech.models.checkpoint_import import (
    CheckpointError,
    filled,
    read_config_json,
    read_transformers_weights,
    tensor_problems,
    write_transformers_checkpoint,
)
from jaxspeech.models.whisper.config import WhisperConfig
from jaxspeech.models.whisper.model import abstract_init, apply

_TIED_OUTPUT = "proj_out.weight"
_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "embedding": "weight", "bias": "bias"}


def _tensor_name(path: tuple) -> str:
    *modules, leaf = (str(p) for p in path)
    if leaf == "embed_positions":  # a bare nnx.Param standing for an nn.Embedding
        return ".".join(["model", *modules, leaf, "weight"])
    return ".".join(["model", *modules, _LEAF_NAMES[leaf]])


def _swap_layout(path: tuple, array):
    """Flax <-> torch layout of one parameter; the map is its own inverse."""
    if path[-1] == "kernel":  # Linear [in, out] <-> [out, in]; Conv [k, in, out] <-> [out, in, k]
        return array.T if array.ndim == 2 else np.transpose(array, (2, 1, 0))
    return array


def _expected_tensors(config: WhisperConfig) -> tuple[nnx.GraphDef, nnx.State, dict[str, tuple[tuple, tuple]]]:
    """(graphdef, abstract params, {tensor name: (param path, torch-layout shape)})."""
    graphdef, abstract = abstract_init(config)
    expected = {}
    for path, variable in nnx.to_flat_state(abstract):
        shape = variable.get_value().shape
        expected[_tensor_name(path)] = (path, shape[::-1] if path[-1] == "kernel" else shape)
    return graphdef, abstract, expected


def params_from_state_dict(
    state_dict: Mapping[str, np.ndarray], config: WhisperConfig, *, dtype=jnp.float32, source: str = "checkpoint"
) -> tuple[nnx.GraphDef, nnx.State]:
    """Transformers tensors (names as in WhisperForConditionalGeneration) -> (graphdef, params).

    Names without the ``model.`` prefix (a bare WhisperModel) are accepted. Raises
    CheckpointError listing every missing, unexpected and mis-shaped tensor (expected vs actual
    shape, torch layout). ``dtype`` casts every parameter (None keeps the stored dtypes).
    """
    tensors = {name if name.startswith("model.") or name == _TIED_OUTPUT else f"model.{name}": value
               for name, value in state_dict.items()}  # fmt: skip
    graphdef, abstract, expected = _expected_tensors(config)
    shapes = {name: shape for name, (_, shape) in expected.items()}
    problems = tensor_problems(shapes, {name: tuple(value.shape) for name, value in tensors.items()},
                               ignored=(_TIED_OUTPUT,))  # fmt: skip
    if problems:
        raise CheckpointError(f"{source} does not match its Whisper config: " + "; ".join(problems))
    embedding = "model.decoder.embed_tokens.weight"
    tied = np.asarray(tensors[embedding])
    if _TIED_OUTPUT in tensors and not np.array_equal(np.asarray(tensors[_TIED_OUTPUT]), tied):
        raise CheckpointError(f"{source}: {_TIED_OUTPUT} differs from {embedding}; untied outputs are not supported")
    flat = {}
    for name, (path, _) in expected.items():
        value = _swap_layout(path, np.asarray(tensors[name]))
        flat[path] = jnp.asarray(value, dtype=dtype if dtype is not None else value.dtype)
    return graphdef, filled(abstract, flat)


def params_to_state_dict(params: nnx.State) -> dict[str, np.ndarray]:
    """Inverse of ``params_from_state_dict``: transformers tensor names -> numpy arrays."""
    return {
        _tensor_name(path): np.ascontiguousarray(_swap_layout(path, np.asarray(variable.get_value())))
        for path, variable in nnx.to_flat_state(params)
    }


def read_transformers_config(path: str | os.PathLike) -> WhisperConfig:
    """The WhisperConfig of checkpoint directory ``path`` (its config.json)."""
    return WhisperConfig.from_transformers(read_config_json(path, "Whisper"))


def import_transformers_checkpoint(
    path: str | os.PathLike, *, dtype=jnp.float32
) -> tuple[WhisperConfig, nnx.GraphDef, nnx.State]:
    """(config, graphdef, params) of a transformers Whisper checkpoint directory.

    Reads config.json and model.safetensors (or its sharded index), else pytorch_model.bin
    (or its index; needs torch). Raises FileNotFoundError without weights, ValueError for an
    unsupported config and CheckpointError for tensors that do not match it.
    """
    path = os.fspath(path)
    config = read_transformers_config(path)
    tensors, files = read_transformers_weights(path)
    graphdef, params = params_from_state_dict(tensors, config, dtype=dtype, source=files[0])
    return config, graphdef, params


def load_transformers_checkpoint(
    path: str | os.PathLike, *, dtype=jnp.float32
) -> tuple[Callable[..., jax.Array], nnx.State]:
    """(apply_fn, params) with ``apply_fn(params, input_features [B, n_mels, frames],
    decoder_input_ids [B, L]) -> logits [B, L, vocab]``, like transformers' model.

    ``apply_fn`` is ``functools.partial(model.apply, graphdef)`` (jit it; it also takes
    ``frame_mask=`` and ``key=``). ``import_transformers_checkpoint`` also returns the config.
    """
    _, graphdef, params = import_transformers_checkpoint(path, dtype=dtype)
    return functools.partial(apply, graphdef), params


def save_transformers_checkpoint(params: nnx.State, config: WhisperConfig, path: str | os.PathLike) -> None:
    """Writes config.json + model.safetensors that ``WhisperForConditionalGeneration.from_pretrained`` loads."""
    _, _, expected = _expected_tensors(config)
    write_transformers_checkpoint(path, params_to_state_dict(params), {n: shape for n, (_, shape) in expected.items()},
                                  lambda dtype: config.to_transformers(dtype=dtype))  # fmt: skip
