"""LLaMA-family decoder-only language models: config (sizes, SmolLM2 presets, transformers config
conversion), model (NNX decoder with a KV cache; embed / hidden_states / logits for other families to
feed), convert (transformers checkpoint import and export, tokenizer loading)."""

from jaxspeech.models.llm.config import PRESETS, LlmConfig, llm_config
from jaxspeech.models.llm.convert import (
    import_transformers_checkpoint,
    load_tokenizer,
    params_from_state_dict,
    params_to_state_dict,
    read_transformers_config,
    save_transformers_checkpoint,
)
from jaxspeech.models.llm.model import Llama, abstract_init, apply, init, init_cache, make_step, resize_vocabulary

__all__ = [
    "PRESETS", "Llama", "LlmConfig", "abstract_init", "apply", "import_transformers_checkpoint", "init",
    "init_cache", "llm_config", "load_tokenizer", "make_step", "params_from_state_dict", "params_to_state_dict",
    "read_transformers_config", "resize_vocabulary", "save_transformers_checkpoint",
]
