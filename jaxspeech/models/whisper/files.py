"""Transcribing audio files with a local ``transformers`` Whisper checkpoint directory.

The directory holds config.json, model.safetensors or pytorch_model.bin, and the tokenizer
files ``transformers.WhisperTokenizer.from_pretrained`` reads offline (tokenizer.json, or
vocab.json + merges.txt). ``transformers`` is only needed here, for the tokenizer, so it is
imported when a checkpoint is loaded. The special-token layout is read from the tokenizer
(the timestamp tokens follow ``<|notimestamps|>``) and from generation_config.json's
``is_multilingual`` when present, then checked against the tokenizer's ids.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxspeech.audio.features import MelPreset, get_preset, log_mel
from jaxspeech.audio.io import load_audio
from jaxspeech.models.hashed_graph import hashed
from jaxspeech.models.whisper.config import SpecialTokens, WhisperConfig, decoder_prefix, special_tokens
from jaxspeech.models.whisper.convert import import_transformers_checkpoint
from jaxspeech.models.whisper.decoding import detect_language, transcribe

TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))


def load_tokenizer(checkpoint: str | os.PathLike) -> Any:
    """``transformers.WhisperTokenizer`` of ``checkpoint``, read offline.

    Raises FileNotFoundError if neither tokenizer.json nor vocab.json + merges.txt is there,
    ImportError (with the install hint) if ``transformers`` is not installed.
    """
    checkpoint = os.fspath(checkpoint)
    if not any(all(os.path.isfile(os.path.join(checkpoint, f)) for f in files) for files in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{checkpoint}: no Whisper tokenizer files (need tokenizer.json, or vocab.json and merges.txt; "
            "WhisperTokenizer.save_pretrained or WhisperProcessor.save_pretrained writes them)"
        )
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            "reading a Whisper tokenizer needs the `transformers` package: pip install 'jaxspeech[dev]' "
            "or pip install transformers"
        ) from err
    return transformers.WhisperTokenizer.from_pretrained(checkpoint, local_files_only=True)


def _first_window_features(waveform: np.ndarray, preset: MelPreset) -> jnp.ndarray:
    """Log-mel ``[1, n_mels, frames]`` of the first 30 s of ``waveform [S]`` (zero-padded), as the model takes."""
    return jnp.swapaxes(log_mel(jnp.asarray(waveform)[None], preset, pad_or_trim=True), 1, 2)


def _is_multilingual(checkpoint: str) -> bool | None:
    """generation_config.json's ``is_multilingual``, or None when it does not say."""
    path = os.path.join(checkpoint, "generation_config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("is_multilingual")


def tokenizer_special_tokens(config: WhisperConfig, tokenizer: Any, checkpoint: str | os.PathLike) -> SpecialTokens:
    """The special-token layout of ``config``'s vocabulary, checked against ``tokenizer``.

    Raises ValueError naming the first token whose tokenizer id differs from the layout's.
    """
    checkpoint = os.fspath(checkpoint)
    no_timestamps = tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    if no_timestamps is None or no_timestamps == tokenizer.unk_token_id:
        raise ValueError(f"{checkpoint}: the tokenizer has no <|notimestamps|> token; not a Whisper tokenizer")
    tokens = special_tokens(
        config, num_timestamps=config.vocab_size - no_timestamps - 1, multilingual=_is_multilingual(checkpoint)
    )
    expected = {"<|endoftext|>": tokens.eot, "<|startoftranscript|>": tokens.sot,
                "<|transcribe|>": tokens.transcribe, "<|notimestamps|>": tokens.no_timestamps}  # fmt: skip
    expected.update({f"<|{code}|>": tokens.language(code) for code in tokens.languages})
    for text, token_id in expected.items():
        found = tokenizer.convert_tokens_to_ids(text)
        if found != token_id:
            raise ValueError(
                f"{checkpoint}: tokenizer gives {text} id {found} but the model's vocabulary layout puts it at "
                f"{token_id}; the tokenizer files do not belong to this checkpoint"
            )
    return tokens


def transcribe_files(
    checkpoint: str | os.PathLike,
    files: list[str],
    *,
    language: str | None = None,
    beam_size: int | None = None,
) -> list[str]:
    """Transcripts (whitespace-stripped) of ``files`` with the Whisper checkpoint directory ``checkpoint``.

    The checkpoint and tokenizer are loaded once. Each file is read as mono at 16 kHz and decoded
    by ``decoding.transcribe`` (30 s windows, stitched) greedily, or with beam search of
    ``beam_size``. A multilingual model without ``language`` detects it per file from its first
    window. Raises FileNotFoundError for a missing directory or files in it, ValueError for an
    unknown language, a bad beam size or unusable audio (``AudioError``).
    """
    checkpoint = os.fspath(checkpoint)
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"Whisper checkpoint directory not found: {checkpoint}")
    if beam_size is not None and beam_size < 1:
        raise ValueError(f"beam_size must be >= 1 (or None for greedy), got {beam_size}")
    tokenizer = load_tokenizer(checkpoint)
    config, graphdef, params = import_transformers_checkpoint(checkpoint)
    graphdef = hashed(graphdef)  # one hash for every window of every file
    tokens = tokenizer_special_tokens(config, tokenizer, checkpoint)
    preset = get_preset(f"whisper_{config.n_mels}")
    fixed_prefix = None
    if language is not None or not tokens.multilingual:
        fixed_prefix = decoder_prefix(tokens, language=language)  # validates the language before any decoding
    options = {} if beam_size is None else {"beam_size": beam_size}
    texts = []
    for path in files:
        waveform = load_audio(path, sample_rate=preset.sample_rate)
        prefix = fixed_prefix
        if prefix is None:
            detected = detect_language(graphdef, params, _first_window_features(waveform, preset), tokens)[0]
            prefix = decoder_prefix(tokens, language=detected)
        ids = transcribe(graphdef, params, config, waveform, prefix, tokens, **options)
        texts.append(tokenizer.decode(ids, skip_special_tokens=True).strip())
    return texts
