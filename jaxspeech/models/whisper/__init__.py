"""Whisper encoder-decoder: sizes and configs, NNX model with a pure apply, transformers
checkpoint import/export, and cached decoding (greedy, sampling, beam search, long audio)."""

from jaxspeech.models.whisper.config import (
    LANGUAGE_CODES,
    WHISPER_SIZES,
    SpecialTokens,
    WhisperConfig,
    decoder_prefix,
    special_tokens,
    whisper_config,
)
from jaxspeech.models.whisper.convert import (
    CheckpointError,
    import_transformers_checkpoint,
    load_transformers_checkpoint,
    params_from_state_dict,
    params_to_state_dict,
    read_transformers_config,
    save_transformers_checkpoint,
)
from jaxspeech.models.whisper.decoding import (
    detect_language,
    generate,
    init_cache,
    make_step,
    stitch_windows,
    transcribe,
    window_starts,
)
from jaxspeech.models.whisper.model import Whisper, abstract_init, apply, encoder_token_logits, init

__all__ = [
    "LANGUAGE_CODES",
    "WHISPER_SIZES",
    "CheckpointError",
    "SpecialTokens",
    "Whisper",
    "WhisperConfig",
    "abstract_init",
    "apply",
    "decoder_prefix",
    "detect_language",
    "encoder_token_logits",
    "generate",
    "import_transformers_checkpoint",
    "init",
    "init_cache",
    "load_transformers_checkpoint",
    "make_step",
    "params_from_state_dict",
    "params_to_state_dict",
    "read_transformers_config",
    "save_transformers_checkpoint",
    "special_tokens",
    "stitch_windows",
    "transcribe",
    "whisper_config",
    "window_starts",
]
