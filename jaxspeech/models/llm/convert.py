"""Import and export of ``transformers`` LLaMA-family checkpoints (config.json + safetensors / PyTorch,
with their tokenizer files), e.g. SmolLM2.

Tensor names: ``model.embed_tokens.weight``, per layer ``model.layers.{i}.input_layernorm``,
``self_attn.{q,k,v,o}_proj``, ``post_attention_layernorm``, ``mlp.{gate,up,down}_proj``, then
``model.norm.weight`` and ``lm_head.weight`` (absent or equal to the embedding when tied). Linear
weights are transposed ([out, in] -> [in, out]).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxspeech.models.checkpoint_import import (
    REVERSED,
    SAME,
    CheckpointError,
    Layout,
    params_from_torch,
    read_config_json,
    read_transformers_weights,
    write_transformers_checkpoint,
)
from jaxspeech.models.llm.config import LlmConfig
from jaxspeech.models.llm.model import abstract_init

_LM_HEAD = "lm_head.weight"
_EMBEDDING = "model.embed_tokens.weight"
_BLOCK_MODULES = {"attn_norm": "input_layernorm", "query": "self_attn.q_proj", "key": "self_attn.k_proj",
                  "value": "self_attn.v_proj", "out": "self_attn.o_proj", "mlp_norm": "post_attention_layernorm",
                  "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}  # fmt: skip
_LEAVES = {"kernel": ("weight", REVERSED), "scale": ("weight", SAME), "embedding": ("weight", SAME),
           "bias": ("bias", SAME)}  # fmt: skip
# Files AutoTokenizer reads for a LLaMA-family tokenizer: a fast tokenizer.json, or SentencePiece's model.
TOKENIZER_FILES = (("tokenizer.json",), ("tokenizer.model",), ("vocab.json", "merges.txt"))


def _torch_tensor(path: tuple) -> tuple[str, Layout]:
    """The transformers tensor (and its layout) of one NNX param path."""
    *modules, leaf = (str(p) for p in path)
    name, layout = _LEAVES[leaf]
    if modules[0] == "lm_head":
        return f"lm_head.{name}", layout
    if modules[0] == "layers":
        return f"model.layers.{modules[1]}.{_BLOCK_MODULES[modules[2]]}.{name}", layout
    return f"model.{modules[0]}.{name}", layout


def params_from_state_dict(
    state_dict: Mapping[str, np.ndarray], config: LlmConfig, *, dtype=jnp.float32, source: str = "checkpoint"
) -> tuple[nnx.GraphDef, nnx.State]:
    """LlamaForCausalLM tensors -> (graphdef, params). Raises CheckpointError listing every missing,
    unexpected and mis-shaped tensor; a tied config accepts ``lm_head.weight`` only if it equals the
    embedding. ``dtype`` casts every parameter (None keeps the stored dtypes)."""
    graphdef, abstract = abstract_init(config)
    tied_head = config.tie_embeddings and _LM_HEAD in state_dict
    if tied_head and not np.array_equal(np.asarray(state_dict[_LM_HEAD]), np.asarray(state_dict.get(_EMBEDDING))):
        raise CheckpointError(f"{source}: {_LM_HEAD} differs from {_EMBEDDING} but config.json says "
                              "tie_word_embeddings=true")  # fmt: skip
    params = params_from_torch(abstract, state_dict, _torch_tensor, ignored=(_LM_HEAD,) if tied_head else (),
                               dtype=dtype, describe=f"{source} does not match its LLaMA config")  # fmt: skip
    return graphdef, params


def params_to_state_dict(params: nnx.State) -> dict[str, np.ndarray]:
    """Inverse of ``params_from_state_dict``: transformers tensor names -> numpy arrays."""
    state_dict = {}
    for path, variable in nnx.to_flat_state(params):
        name, layout = _torch_tensor(path)
        # REVERSED and SAME are their own inverses
        state_dict[name] = np.ascontiguousarray(layout.to_ours(np.asarray(variable.get_value())))
    return state_dict


def read_transformers_config(path: str | os.PathLike) -> LlmConfig:
    """The LlmConfig of checkpoint directory ``path`` (its config.json); ValueError if it is not a
    LLaMA-family model this implementation reproduces."""
    config = read_config_json(path, "LLaMA")
    try:
        return LlmConfig.from_transformers(config)
    except ValueError as err:
        raise ValueError(f"{os.path.join(os.fspath(path), 'config.json')}: {err}") from None


def import_transformers_checkpoint(
    path: str | os.PathLike, *, dtype=jnp.float32
) -> tuple[LlmConfig, nnx.GraphDef, nnx.State]:
    """(config, graphdef, params) of a transformers LLaMA-family checkpoint directory.

    Raises FileNotFoundError for a missing directory, config.json or weights, ValueError for a
    config of another family or with unsupported options, CheckpointError for tensors that do not
    match the config.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"LLaMA checkpoint directory not found: {path}")
    config = read_transformers_config(path)
    tensors, files = read_transformers_weights(path)
    graphdef, params = params_from_state_dict(tensors, config, dtype=dtype, source=files[0])
    return config, graphdef, params


def save_transformers_checkpoint(params: nnx.State, config: LlmConfig, path: str | os.PathLike,
                                 *, tokenizer: Any = None) -> None:
    """Writes config.json + model.safetensors (and ``tokenizer``'s files when given) that
    ``LlamaForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` load."""
    _, abstract = abstract_init(config)
    expected = {}
    for path_in_tree, variable in nnx.to_flat_state(abstract):
        name, layout = _torch_tensor(path_in_tree)
        expected[name] = layout.torch_shape(variable.get_value().shape)
    write_transformers_checkpoint(path, params_to_state_dict(params), expected,
                                  lambda dtype: config.to_transformers(dtype=dtype))
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def load_tokenizer(path: str | os.PathLike) -> Any:
    """``transformers.AutoTokenizer`` of checkpoint directory ``path``, read offline.

    Raises FileNotFoundError without tokenizer files, ImportError (with the install hint) without
    ``transformers``.
    """
    path = os.fspath(path)
    if not any(all(os.path.isfile(os.path.join(path, f)) for f in files) for files in TOKENIZER_FILES):
        raise FileNotFoundError(f"{path}: no tokenizer files (need tokenizer.json, tokenizer.model, or vocab.json "
                                "and merges.txt; tokenizer.save_pretrained writes them)")  # fmt: skip
    try:
        import transformers
    except ImportError as err:
        raise ImportError("reading a LLaMA tokenizer needs the `transformers` package: pip install 'jaxspeech[dev]' "
                          "or pip install transformers") from err  # fmt: skip
    return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
