"""Import of PyTorch HiFi-GAN checkpoints (jik876/hifi-gan, Matcha-TTS's ``matcha.hifigan``): generator, MPD, MSD.

Tensor names are the parameter paths (``conv_pre``, ``ups.{i}``, ``resblocks.{n}.convs1.{j}``,
``conv_post``) with ``.weight`` / ``.bias``. Weight-normed convolutions store ``weight_g`` and
``weight_v`` (``torch.nn.utils.weight_norm``) or ``parametrizations.weight.original0/1``
(``torch.nn.utils.parametrizations.weight_norm``); both are folded into one weight
g * v / ||v|| (norm over every axis but the first), spectral norm (``weight_orig``, ``weight_u``,
``weight_v``: the first scale discriminator) into w / sigma, and plain ``weight`` (after
``remove_weight_norm``) is taken as is. Conv1d weights [out, in, k] become [k, in, out],
ConvTranspose1d weights [in, out, k] become [k, in, out].
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxspeech.models.checkpoint_import import CheckpointError, filled, tensor_problems
from jaxspeech.models.hifigan.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from jaxspeech.models.hifigan.model import V1, HifiGanConfig, HifiGanGenerator

_WEIGHT_NORM = (("weight_g", "weight_v"), ("parametrizations.weight.original0", "parametrizations.weight.original1"))
_SPECTRAL_NORM = ("weight_orig", "weight_u", "weight_v")
_REPARAMETRISED = (".weight_g", ".weight_v", ".weight_orig", ".weight_u")


def _folded(tensors: dict[str, np.ndarray], module: str) -> np.ndarray | None:
    """Pops ``module``'s weight tensors and returns its weight with any weight norm (g v / ||v||,
    norm over every axis but the first) or spectral norm (w / u.(W v), torch's eval-mode sigma
    from the stored vectors) folded in; None if it has none."""
    if f"{module}.weight" in tensors:
        return tensors.pop(f"{module}.weight").astype(np.float32)
    orig, u, v = (f"{module}.{name}" for name in _SPECTRAL_NORM)
    if orig in tensors and u in tensors:
        weight, u, v = (tensors.pop(name).astype(np.float64) for name in (orig, u, v))
        sigma = u @ (weight.reshape(weight.shape[0], -1) @ v)
        return (weight / sigma).astype(np.float32)
    for g_name, v_name in _WEIGHT_NORM:
        if f"{module}.{g_name}" in tensors and f"{module}.{v_name}" in tensors:
            g = tensors.pop(f"{module}.{g_name}").astype(np.float64)
            v = tensors.pop(f"{module}.{v_name}").astype(np.float64)
            norm = np.sqrt((v**2).sum(axis=tuple(range(1, v.ndim)), keepdims=True))
            return (g * v / norm).astype(np.float32)
    return None


def _torch_weights(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{module.weight or module.bias: array} with weight and spectral norms folded (other names kept)."""
    tensors = {name: np.asarray(value) for name, value in state_dict.items()}
    modules = {name.rsplit(".", 1)[0] for name in tensors if name.endswith(_REPARAMETRISED)}
    modules |= {name.split(".parametrizations.")[0] for name in tensors if ".parametrizations.weight." in name}
    for module in sorted(modules):
        weight = _folded(tensors, module)
        if weight is not None:
            tensors[f"{module}.weight"] = weight
    return tensors


def _torch_axes(module: str) -> tuple[int, int, int]:
    """The axes of a stored [k, in, out] kernel in torch's weight order: ConvTranspose1d
    (``ups.*``) [in, out, k], Conv1d [out, in, k]."""
    return (1, 2, 0) if module.startswith("ups.") else (2, 1, 0)


def _import(model: nnx.Module, state_dict: Mapping[str, np.ndarray], what: str, source: str):
    """(graphdef, params) of ``model`` (an abstract module: nnx.eval_shape) from torch tensors."""
    tensors = _torch_weights(state_dict)
    # (k, 1) Conv2d kernels (period discriminators) are Conv1d kernels with a trailing axis.
    tensors = {n: v[..., 0] if v.ndim == 4 and v.shape[-1] == 1 else v for n, v in tensors.items()}
    graphdef, abstract = nnx.split(model, nnx.Param)
    expected = {}
    for path, variable in nnx.to_flat_state(abstract):
        shape = variable.get_value().shape
        module, leaf = ".".join(str(p) for p in path[:-1]), path[-1]
        if leaf == "kernel":
            expected[f"{module}.weight"] = (path, tuple(shape[axis] for axis in _torch_axes(module)))
        else:
            expected[f"{module}.bias"] = (path, shape)
    problems = tensor_problems({n: s for n, (_, s) in expected.items()}, {n: v.shape for n, v in tensors.items()})
    if problems:
        raise CheckpointError(f"{source} does not match the {what}: " + "; ".join(problems))
    flat = {}
    for name, (path, _) in expected.items():
        value = tensors[name]
        if path[-1] == "kernel":
            value = np.transpose(value, np.argsort(_torch_axes(name)))
        flat[path] = jnp.asarray(value, jnp.float32)
    return graphdef, filled(abstract, flat)


def params_from_state_dict(
    state_dict: Mapping[str, np.ndarray], config: HifiGanConfig = V1, *, source: str = "checkpoint"
) -> tuple[nnx.GraphDef, nnx.State]:
    """A HiFi-GAN generator state dict (torch names, weight norm or not) -> (graphdef, params).

    Raises CheckpointError listing every missing, unexpected and mis-shaped tensor (torch layout).
    """
    model = nnx.eval_shape(lambda: HifiGanGenerator(config, rngs=nnx.Rngs(params=0)))
    return _import(model, state_dict, f"HiFi-GAN config {config}", source)


def discriminator_params_from_state_dict(
    state_dict: Mapping[str, np.ndarray], kind: str, *, source: str = "checkpoint"
) -> tuple[nnx.GraphDef, nnx.State]:
    """HiFi-GAN's "mpd" (MultiPeriodDiscriminator) or "msd" (MultiScaleDiscriminator) state dict
    (the ``do_*`` files hold them under "mpd" / "msd") -> (graphdef, params); norms folded."""
    factories = {"mpd": MultiPeriodDiscriminator, "msd": MultiScaleDiscriminator}
    if kind not in factories:
        raise ValueError(f"kind must be 'mpd' or 'msd', got {kind!r}")
    model = nnx.eval_shape(lambda: factories[kind](rngs=nnx.Rngs(params=0)))
    return _import(model, state_dict, f"HiFi-GAN {kind.upper()}", source)


def import_hifigan_checkpoint(path: str | os.PathLike, config: HifiGanConfig | None = None):
    """(config, graphdef, params) from a PyTorch generator file: ``torch.save``d state dict, or a
    dict holding it under "generator" (HiFi-GAN's and Matcha-TTS's ``generator_v1``).

    ``config``: None reads config.json beside the file if there is one, else assumes V1 (a
    checkpoint of another architecture then fails the tensor check, naming the tensors).
    """
    import torch  # an optional dependency, needed only to read PyTorch files

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such HiFi-GAN checkpoint file")
    if config is None:
        beside = os.path.join(os.path.dirname(path), "config.json")
        config = V1
        if os.path.isfile(beside):
            with open(beside) as file:
                config = HifiGanConfig.from_dict(json.load(file))
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    state_dict = loaded.get("generator", loaded) if isinstance(loaded, Mapping) else None
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{path} holds {type(loaded).__name__}, not a generator state dict")
    arrays = {name: value.detach().float().numpy() for name, value in state_dict.items() if hasattr(value, "numpy")}
    graphdef, params = params_from_state_dict(arrays, config, source=path)
    return config, graphdef, params
