"""Character and phoneme tokenizers backed by an explicit vocab file.

Id 0 is reserved for the CTC blank / padding symbol ``<blank>``; real symbols start at 1.
A vocab file is JSON: ``{"kind": "chars" | "phonemes", "symbols": [...], "unknown": null | sym}``
(and ``"blank_between": true`` for a tokenizer that puts the blank between symbols and at both
ends, Glow-TTS / Matcha-TTS's add_blank).
Unknown symbols raise :class:`UnknownSymbolError` naming them, unless the tokenizer was built
with a replacement symbol, never a silent drop.
"""

from __future__ import annotations

import dataclasses
import json
import os
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np

BLANK = "<blank>"
_KINDS = ("chars", "phonemes")
_STRESS_MARKS = "ˈˌ"  # stress precedes its syllable: a symbol of its own


class UnknownSymbolError(ValueError):
    """Raised when a text holds symbols that are not in the vocabulary."""


def _phoneme_symbols(text: str) -> list[str]:
    """Splits an IPA string into symbols: a base character plus its combining marks and modifiers."""
    symbols: list[str] = []
    for char in unicodedata.normalize("NFC", text):
        is_modifier = unicodedata.category(char) == "Lm" and char not in _STRESS_MARKS
        attaches = unicodedata.combining(char) or is_modifier
        if attaches and symbols and symbols[-1] != " ":
            symbols[-1] += char
        else:
            symbols.append(char)
    return symbols


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    """Maps text to int32 ids and back. ``symbols[0]`` is always the blank."""

    kind: str
    symbols: tuple[str, ...]
    unknown: str | None = None
    blank_between: bool = False

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"tokenizer kind must be one of {_KINDS}, got {self.kind!r}")
        if not self.symbols or self.symbols[0] != BLANK:
            raise ValueError(f"symbols[0] must be {BLANK!r}")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("vocabulary has duplicate symbols")
        if self.unknown is not None and self.unknown not in self.symbols:
            raise ValueError(f"replacement symbol {self.unknown!r} is not in the vocabulary")
        object.__setattr__(self, "_ids", {s: i for i, s in enumerate(self.symbols)})

    @classmethod
    def from_texts(cls, texts: Iterable[str], kind: str = "chars", unknown: str | None = None) -> Tokenizer:
        """Builds the vocabulary of every symbol seen in ``texts`` (sorted, deterministic)."""
        split = cls._splitter(kind)
        seen = sorted({s for t in texts for s in split(t)} | ({unknown} if unknown else set()))
        return cls(kind, (BLANK, *seen), unknown)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        return cls(spec["kind"], tuple(spec["symbols"]), spec.get("unknown"), spec.get("blank_between", False))

    def save(self, path: str | os.PathLike) -> None:
        spec = {"kind": self.kind, "symbols": list(self.symbols), "unknown": self.unknown}
        if self.blank_between:
            spec["blank_between"] = True
        with open(path, "w", encoding="utf-8") as f:
            json.dump(spec, f, ensure_ascii=False, indent=1)

    @staticmethod
    def _splitter(kind: str):
        return list if kind == "chars" else _phoneme_symbols

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def unknown_symbols(self, text: str) -> list[str]:
        """The distinct symbols of ``text`` missing from the vocabulary, in order of appearance."""
        return list(dict.fromkeys(s for s in self._splitter(self.kind)(text) if s not in self._ids))

    def encode(self, text: str) -> np.ndarray:
        """Text -> int32 ids ``[L]`` (``[2L + 1]`` with ``blank_between``). Raises UnknownSymbolError
        unless a replacement is configured."""
        symbols = self._splitter(self.kind)(text)
        missing = [s for s in symbols if s not in self._ids]
        if missing and self.unknown is None:
            raise UnknownSymbolError(
                f"{len(missing)} symbol(s) not in the {self.kind} vocabulary: "
                f"{sorted(set(missing))!r} in {text!r}"
            )
        fallback = self._ids.get(self.unknown, -1)
        ids = np.asarray([self._ids.get(s, fallback) for s in symbols], dtype=np.int32)
        if not self.blank_between:
            return ids
        interleaved = np.zeros(2 * len(ids) + 1, np.int32)
        interleaved[1::2] = ids
        return interleaved

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text, dropping blanks and negative padding ids."""
        return "".join(self.symbols[i] for i in ids if 0 < i < len(self.symbols))
