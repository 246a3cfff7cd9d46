"""UniVoice rows: every utterance as an ASR row and as a TTS row, in batches that mix both tasks.

The vocabulary is characters plus three task symbols (``univoice_tokenizer``: ``<eos>`` ends a
transcript, ``<asr>`` and ``<tts>`` open a row), or a pretrained LLM's own tokenizer with ``<asr>`` and
``<tts>`` added and its eos token as ``<eos>`` (``PretrainedVocabulary``; e.g. SmolLM2's, with the
model's embedding grown by ``models.llm.resize_vocabulary``). An ASR row's tokens are ``<asr>`` + the
transcript (``normalize_for_asr``: lower case over ``[a-z' ]``) + ``<eos>``, with the transcript and
``<eos>`` as targets; a TTS row's tokens are ``<tts>`` + the text as spoken (lower case, numbers spelled
out, the punctuation that shapes prosody kept: ``,.?!``) and its mel is the target.

Batch layout: ``pipeline.collate``'s (``mel``, ``mel_mask``, ``tokens``, ``token_mask``, ``index``)
plus ``tts`` [B] bool and ``target_mask`` [B, L] bool (see ``models.univoice.loss``); for a Whisper
audio encoder (``WhisperFeatures``) also ``asr_features`` [B, 3000, mels] (each ASR row's 30 s window,
Whisper's log-mel at 16 kHz) and ``asr_feature_lengths`` [B] (3000 for ASR rows, else 0).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np

from jaxspeech import audio
from jaxspeech.data.pipeline import SpeechDataset, collate
from jaxspeech.text import Tokenizer, normalize_for_asr
from jaxspeech.text.tokenizer import BLANK

EOS, ASR, TTS = "<eos>", "<asr>", "<tts>"
TASK_SYMBOLS = (EOS, ASR, TTS)
TASKS = ("asr", "tts")
_SPOKEN_PUNCTUATION = re.compile(r"\s*([,.?!])\s*")


def spoken_text(text: str) -> str:
    """The text a TTS row reads: ``normalize_for_asr``'s words with , . ? ! kept where they were.

    >>> spoken_text("Did you see 42 red boats?")
    'did you see forty two red boats?'
    """
    pieces = _SPOKEN_PUNCTUATION.split(text.replace("-", " "))
    out = ""
    for i, piece in enumerate(pieces):
        if i % 2:  # a punctuation mark
            out = out.rstrip() + piece + " "
        elif words := normalize_for_asr(piece):
            out += words + " "
    return out.strip()


def univoice_tokenizer(texts: Iterable[str]) -> Tokenizer:
    """Characters of the transcripts and spoken texts of ``texts``, after the blank and the task symbols."""
    texts = list(texts)
    chars = sorted({c for t in texts for c in normalize_for_asr(t) + spoken_text(t)})
    return Tokenizer("chars", (BLANK, *TASK_SYMBOLS, *chars))


class PretrainedVocabulary:
    """A ``transformers`` tokenizer with UniVoice's task symbols: ``<asr>`` and ``<tts>`` added as special
    tokens (after its vocabulary), ``<eos>`` its own eos token. ``encode``/``decode`` text without
    special tokens; ``save`` writes ``save_pretrained``'s files (read them back with
    ``models.llm.load_tokenizer``)."""

    def __init__(self, tokenizer: Any):
        if tokenizer.eos_token_id is None:
            raise ValueError("the pretrained tokenizer has no eos token to end transcripts with")
        missing = [s for s in (ASR, TTS) if s not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing})
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text, add_special_tokens=False), np.int32)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def id_of(self, symbol: str) -> int:
        return int(self.tokenizer.eos_token_id if symbol == EOS else self.tokenizer.convert_tokens_to_ids(symbol))

    def save(self, path: str | os.PathLike) -> None:
        self.tokenizer.save_pretrained(path)


def symbol_id(vocabulary: Tokenizer | PretrainedVocabulary, symbol: str) -> int:
    """The id of a task symbol (ValueError if the vocabulary lacks it: not a UniVoice vocabulary)."""
    if isinstance(vocabulary, PretrainedVocabulary):
        return vocabulary.id_of(symbol)
    if symbol not in vocabulary.symbols:
        raise ValueError(f"the vocabulary has no {symbol!r}: it is not a UniVoice vocabulary")
    return vocabulary.symbols.index(symbol)


def task_records(records: Sequence[dict], tasks: Sequence[str] = TASKS) -> list[dict]:
    """Each record once per task (a copy with ``"task"`` set)."""
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known: {TASKS}")
    return [{**record, "task": task} for record in records for task in tasks]


def univoice_labeler(tokenizer: Tokenizer):
    """A task record's tokens [L] (see the module docstring)."""
    asr, tts, eos = (symbol_id(tokenizer, s) for s in (ASR, TTS, EOS))

    def label(record: dict) -> np.ndarray:
        if record["task"] == "asr":
            return np.concatenate([[asr], tokenizer.encode(normalize_for_asr(record["text"])), [eos]]).astype(np.int32)
        return np.concatenate([[tts], tokenizer.encode(spoken_text(record["text"]))]).astype(np.int32)

    return label


class WhisperFeatures:
    """``univoice_collate`` plus the Whisper encoder's input for the ASR rows (see the module docstring);
    preset: ``"whisper_80"`` or ``"whisper_128"``."""

    def __init__(self, preset: str):
        self.preset = audio.get_preset(preset)
        self.window = audio.num_frames(self.preset.pad_or_trim_samples, self.preset)
        self._log_mel = jax.jit(lambda w: audio.log_mel(w, self.preset, pad_or_trim=True))

    def features(self, waveform: np.ndarray) -> np.ndarray:
        """[window, mels] of a waveform at the preset's rate (zero-padded or trimmed to 30 s)."""
        return np.asarray(self._log_mel(np.asarray(waveform, np.float32)))

    def __call__(self, dataset: SpeechDataset, rows: np.ndarray, frames: int, label_len: int) -> dict[str, np.ndarray]:
        batch = univoice_collate(dataset, rows, frames, label_len)
        asr = (batch["index"] >= 0) & ~batch["tts"]
        features = np.zeros((len(rows), self.window, self.preset.n_mels), np.float32)
        for r in np.flatnonzero(asr):
            record = dataset.records[int(batch["index"][r])]
            features[r] = self.features(audio.load_audio(record["audio"], sample_rate=self.preset.sample_rate))
        batch["asr_features"], batch["asr_feature_lengths"] = features, np.where(asr, self.window, 0).astype(np.int32)
        return batch


def univoice_collate(dataset: SpeechDataset, rows: np.ndarray, frames: int, label_len: int) -> dict[str, np.ndarray]:
    """``collate`` plus the task of each row and its LM targets (an ASR row's tokens after ``<asr>``)."""
    batch = collate(dataset, rows, frames, label_len)
    tts = np.array([i >= 0 and dataset.records[int(i)]["task"] == "tts" for i in rows], bool)
    after_prompt = np.arange(label_len)[None, :] >= 1
    batch["tts"] = tts & (batch["index"] >= 0)
    batch["target_mask"] = batch["token_mask"] & after_prompt & ~tts[:, None]
    return batch
