"""Import of Vocos checkpoints (the ``vocos`` package's format, e.g. charactr/vocos-mel-24khz) into the
iSTFT vocoder (``jaxspeech.models.vocoder``, the same architecture).

A Vocos directory holds ``config.yaml`` (``feature_extractor``, ``backbone``, ``head``, each a
``class_path`` with ``init_args``) and ``pytorch_model.bin`` (the state dict). Supported: the mel
features (``MelSpectrogramFeatures``, mapped to the jaxspeech preset with the same settings), the
plain ``VocosBackbone`` (no AdaLayerNorm: the EnCodec variant's bandwidth conditioning is not
supported) and the ``ISTFTHead`` with "same" padding.

Tensor names: ``backbone.embed`` (Conv1d [dim, mels, 7] -> [7, mels, dim]), ``backbone.norm``,
``backbone.convnext.{i}.dwconv`` (depthwise [dim, 1, 7] -> [7, dim]), ``.norm``, ``.pwconv1``,
``.pwconv2`` (Linear [out, in] -> [in, out]), ``.gamma``, ``backbone.final_layer_norm``, ``head.out``;
LayerNorm ``weight`` is our ``scale``. Buffers (``feature_extractor.*``, ``head.istft.window``) are
not weights and are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np
import yaml
from flax import nnx

from jaxspeech.audio.features import PRESETS
from jaxspeech.models import vocoder
from jaxspeech.models.checkpoint_import import REVERSED, SAME, CheckpointError, Layout, params_from_torch

_BUFFERS = ("feature_extractor.", "head.istft.window")


def _init_args(config: Mapping[str, Any], part: str, class_name: str) -> dict:
    section = config.get(part)
    if not isinstance(section, Mapping) or not str(section.get("class_path", "")).endswith(class_name):
        found = section.get("class_path") if isinstance(section, Mapping) else section
        raise CheckpointError(f"Vocos config: {part} must be {class_name}, got {found!r}")
    return dict(section.get("init_args", {}))


def _preset(features: Mapping[str, Any]) -> str:
    """The jaxspeech mel preset with the settings of Vocos' MelSpectrogramFeatures."""
    wanted = (features.get("sample_rate", 24000), features.get("n_fft", 1024), features.get("hop_length", 256),
              features.get("n_mels", 100), "center" if features.get("padding", "center") == "center" else "same")
    for name, preset in PRESETS.items():
        have = (preset.sample_rate, preset.n_fft, preset.hop_length, preset.n_mels, preset.padding)
        if have == wanted and preset.mel_scale == "htk" and preset.power == 1.0 and preset.log_floor == 1e-7:
            return name
    raise CheckpointError(f"no jaxspeech mel preset matches Vocos features {features} (sample rate, n_fft, hop, "
                          "mels, padding)")


def vocoder_config(config: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A Vocos ``config.yaml`` dict -> the ``neural_vocoder`` config of the same iSTFT vocoder."""
    features = _init_args(config, "feature_extractor", "MelSpectrogramFeatures")
    backbone = _init_args(config, "backbone", "VocosBackbone")
    head = _init_args(config, "head", "ISTFTHead")
    if backbone.get("adanorm_num_embeddings"):
        raise CheckpointError("Vocos backbones with AdaLayerNorm (EnCodec bandwidth conditioning) are not supported")
    if head.get("padding", "same") != "same":
        raise CheckpointError(f"Vocos ISTFTHead padding {head.get('padding')!r} is not supported (only 'same')")
    preset = _preset(features)
    if head["hop_length"] != PRESETS[preset].hop_length or backbone["input_channels"] != PRESETS[preset].n_mels:
        raise CheckpointError(f"Vocos head hop {head['hop_length']} / backbone input {backbone['input_channels']} "
                              f"do not match its features ({preset})")
    return ml_collections.ConfigDict(dict(
        generator="istft", preset=preset, n_mels=backbone["input_channels"], dim=backbone["dim"],
        intermediate_dim=backbone["intermediate_dim"], num_layers=backbone["num_layers"], kernel_size=7,
        n_fft=head["n_fft"]))  # fmt: skip


_DEPTHWISE = Layout(lambda v: v[:, 0, :].T, lambda shape: (shape[1], 1, shape[0]))  # [dim, 1, k] <-> [k, dim]
_MODULES = {"embed": "backbone.embed", "embed_norm": "backbone.norm", "final_norm": "backbone.final_layer_norm",
            "head": "head.out", "norm": "norm", "up": "pwconv1", "down": "pwconv2"}  # fmt: skip
_BLOCK_LEAVES = {"depthwise_kernel": ("dwconv.weight", _DEPTHWISE), "depthwise_bias": ("dwconv.bias", SAME),
                 "gamma": ("gamma", SAME)}  # fmt: skip


def _torch_tensor(path: tuple) -> tuple[str, Layout]:
    """The Vocos tensor name and layout of one of our param paths."""
    names = [str(p) for p in path]
    prefix = ""
    if names[0] == "blocks":
        prefix, names = f"backbone.convnext.{names[1]}.", names[2:]
        if len(names) == 1:
            leaf, layout = _BLOCK_LEAVES[names[0]]
            return prefix + leaf, layout
    module, leaf = names
    layout = REVERSED if leaf == "kernel" else SAME
    return f"{prefix}{_MODULES[module]}.{'weight' if leaf in ('kernel', 'scale') else leaf}", layout


def params_from_state_dict(state_dict: Mapping[str, np.ndarray], config: Mapping[str, Any], *,
                           source: str = "checkpoint") -> tuple[nnx.GraphDef, nnx.State]:
    """A Vocos state dict (torch names and layouts) -> (graphdef, params) of ``vocoder.Vocoder(config)``.

    Raises CheckpointError listing every missing, unexpected and mis-shaped tensor (torch layout).
    """
    model = nnx.eval_shape(lambda: vocoder.Vocoder(config, rngs=nnx.Rngs(params=0)))
    graphdef, abstract = nnx.split(model, nnx.Param)
    tensors = {name: value for name, value in state_dict.items() if not name.startswith(_BUFFERS)}
    return graphdef, params_from_torch(abstract, tensors, _torch_tensor,
                                       describe=f"{source} does not match the Vocos vocoder {dict(config)}")


def import_vocos_checkpoint(directory: str | os.PathLike):
    """(config, graphdef, params) from a Vocos directory (``config.yaml`` + ``pytorch_model.bin``).

    ``config`` is the ``neural_vocoder`` config (generator "istft"); ``vocoder.apply(graphdef,
    params, log_mel(wave, config.preset)[None], mask)`` is Vocos' ``decode``.
    """
    import torch  # an optional dependency, needed only to read PyTorch files

    directory = os.fspath(directory)
    config_path, weights_path = (os.path.join(directory, n) for n in ("config.yaml", "pytorch_model.bin"))
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: a Vocos checkpoint directory holds config.yaml and pytorch_model.bin")
    with open(config_path, encoding="utf-8") as file:
        config = vocoder_config(yaml.safe_load(file))
    state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    arrays = {name: value.detach().float().numpy() for name, value in state_dict.items()}
    graphdef, params = params_from_state_dict(arrays, config, source=weights_path)
    return config, graphdef, params
