"""LLaMA-family decoder sizes and conversion from/to a ``transformers`` LlamaConfig dict.

``llm_config("tiny")`` is a CPU-sized decoder; ``llm_config("smollm2-135m")`` and
``llm_config("smollm2-360m")`` give SmolLM2's published shapes (Allal et al. 2025; the LLM
UniVoice builds on). ``LlmConfig.from_transformers(json.load(open("config.json")))`` reads a
checkpoint's config and refuses what this implementation would compute differently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

# model_type values whose transformers implementation is LlamaForCausalLM's maths with these fields.
MODEL_TYPES = ("llama",)


@dataclasses.dataclass(frozen=True)
class LlmConfig:
    """Architecture of a LLaMA-style decoder (hashable: a static jit argument).

    vocab_size, hidden_size, intermediate_size (SwiGLU width), num_layers; num_heads query heads
    of ``head_dim`` (None: hidden_size / num_heads, filled in) sharing num_kv_heads key/value heads
    (grouped-query attention); rope_theta: RoPE base; rms_norm_eps; tie_embeddings: logits
    over the token table (no separate lm_head); max_position_embeddings bounds the KV cache;
    attention_bias / mlp_bias: biases on q/k/v/o and gate/up/down; bos/eos/pad_token_id as in
    transformers; initializer_range: std of the normal init; attention_impl:
    ``jaxspeech.nn.attention.attention``'s impl; dropout on residual branches (training only).
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    max_position_embeddings: int = 2048
    attention_bias: bool = False
    mlp_bias: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    initializer_range: float = 0.02
    attention_impl: str = "auto"
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                     "num_kv_heads", "max_position_embeddings"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"LlmConfig.{name} must be a positive int, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not divisible by num_kv_heads={self.num_kv_heads}")
        if self.head_dim is None:
            if self.hidden_size % self.num_heads:
                raise ValueError(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}; "
                                 "give head_dim")
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if self.head_dim < 2 or self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {self.head_dim}")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            token = getattr(self, name)
            if token is not None and not 0 <= token < self.vocab_size:
                raise ValueError(f"LlmConfig.{name}={token} is outside the vocabulary [0, {self.vocab_size})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_transformers(cls, config: Mapping[str, Any]) -> LlmConfig:
        """Reads a transformers LlamaConfig dict (a checkpoint's config.json).

        Raises ValueError naming the fields for another model type, activation, RoPE scaling or
        a pretraining tensor-parallel split (``pretraining_tp`` > 1), or missing sizes.
        """
        model_type = config.get("model_type")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"not a LLaMA-family config: model_type={model_type!r} (supported: {MODEL_TYPES})")
        unsupported = []
        if config.get("hidden_act", "silu") != "silu":
            unsupported.append(f"hidden_act={config['hidden_act']!r} (only 'silu')")
        # transformers >= 5 writes rope_parameters (with rope_theta); earlier versions rope_scaling + rope_theta.
        rope = {**(config.get("rope_scaling") or {}), **(config.get("rope_parameters") or {})}
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            unsupported.append(f"RoPE scaling {rope!r} (only unscaled RoPE)")
        if config.get("pretraining_tp", 1) != 1:
            unsupported.append(f"pretraining_tp={config['pretraining_tp']}")
        if unsupported:
            raise ValueError("unsupported LLaMA config: " + "; ".join(unsupported))
        required = {"vocab_size": "vocab_size", "hidden_size": "hidden_size",
                    "intermediate_size": "intermediate_size", "num_layers": "num_hidden_layers",
                    "num_heads": "num_attention_heads"}  # fmt: skip
        missing = [theirs for theirs in required.values() if theirs not in config]
        if missing:
            raise ValueError(f"LLaMA config.json lacks {missing}")
        fields = {ours: config[theirs] for ours, theirs in required.items()}
        eos = config.get("eos_token_id")
        if isinstance(eos, list):  # several stop tokens: generation stops at the first listed
            eos = eos[0] if eos else None
        return cls(
            **fields,
            num_kv_heads=config.get("num_key_value_heads") or fields["num_heads"],
            head_dim=config.get("head_dim"),
            rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(config.get("tie_word_embeddings", False)),
            max_position_embeddings=int(config.get("max_position_embeddings", 2048)),
            attention_bias=bool(config.get("attention_bias", False)),
            mlp_bias=bool(config.get("mlp_bias", False)),
            bos_token_id=config.get("bos_token_id"),
            eos_token_id=eos,
            pad_token_id=config.get("pad_token_id"),
            initializer_range=float(config.get("initializer_range", 0.02)),
        )

    def to_transformers(self, *, dtype: str = "float32") -> dict[str, Any]:
        """A transformers LlamaConfig dict that ``LlamaForCausalLM`` builds this architecture from."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rope_theta": self.rope_theta,
            "rope_scaling": None,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "attention_bias": self.attention_bias,
            "mlp_bias": self.mlp_bias,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "initializer_range": self.initializer_range,
            "torch_dtype": dtype,
        }


_SMOLLM2 = dict(vocab_size=49152, rope_theta=100000.0, rms_norm_eps=1e-5, tie_embeddings=True,
                max_position_embeddings=8192, bos_token_id=0, eos_token_id=0, pad_token_id=None)  # fmt: skip
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=256, hidden_size=64, intermediate_size=172, num_layers=2, num_heads=4,
                 num_kv_heads=2, max_position_embeddings=1024),
    # HuggingFaceTB/SmolLM2-135M and -360M config.json
    "smollm2-135m": dict(_SMOLLM2, hidden_size=576, intermediate_size=1536, num_layers=30, num_heads=9,
                         num_kv_heads=3),
    "smollm2-360m": dict(_SMOLLM2, hidden_size=960, intermediate_size=2560, num_layers=32, num_heads=15,
                         num_kv_heads=5),
}  # fmt: skip


def llm_config(name: str, **overrides: Any) -> LlmConfig:
    """The preset ``name`` (see PRESETS), with any field overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown LLM preset {name!r}; available: {sorted(PRESETS)}")
    return LlmConfig(**{**PRESETS[name], **overrides})
