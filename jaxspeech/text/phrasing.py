"""Phrase structure of a phoneme string for ProsodyFM-style TTS: break tokens and phrase boundaries.

ProsodyFM puts a phrase-break token at every word boundary and lets the alignment and the
duration predictor learn how long each break lasts, with no prosodic labels; its terminal
intonation encoder looks at the last word before each phrase boundary (a comma or the end of a
sentence). ``phrase`` turns an eSpeak-style IPA string (words separated by spaces, punctuation
attached to words) into that structure:

    "hˈɛloʊ, wˈɜːld?" -> symbols     h ˈ ɛ l o ʊ , | w ˈ ɜː l d ?
                         words       [0, 6) and [8, 13)
                         boundaries  (word 0, symbol 6, comma), (word 1, symbol 13, question)

``text`` is the same symbols as one string, ready for a ``Tokenizer`` of kind "phonemes", whose
symbol splitting it shares, so symbol indices here are token indices there.
"""

from __future__ import annotations

import dataclasses

from jaxspeech.text.tokenizer import _phoneme_symbols

BREAK = "|"
# punctuation that closes a phrase -> the kind of boundary it marks
BOUNDARY_KINDS = {",": "comma", ";": "comma", ":": "comma", ".": "statement", "!": "statement", "?": "question"}
_SILENT_PUNCTUATION = set("\"'()[]-—–…")  # dropped: no sound, no boundary


@dataclasses.dataclass(frozen=True)
class Boundary:
    """A phrase boundary: the word before it, the index of its punctuation symbol, its kind."""

    word: int
    symbol: int
    kind: str


@dataclasses.dataclass(frozen=True)
class PhrasedText:
    """symbols: phoneme symbols with ``BREAK`` between words; words: [start, end) symbol spans of
    each word's phonemes (punctuation excluded); boundaries: one per phrase-closing punctuation mark."""

    symbols: tuple[str, ...]
    words: tuple[tuple[int, int], ...]
    boundaries: tuple[Boundary, ...]

    @property
    def text(self) -> str:
        return "".join(self.symbols)


def phrase(phonemes: str) -> PhrasedText:
    """Breaks, word spans and phrase boundaries of an IPA string with space-separated words.

    Raises ValueError for an empty string, the break symbol inside the input, or punctuation with
    no word before it.
    """
    if BREAK in phonemes:
        raise ValueError(f"phoneme string already contains the break symbol {BREAK!r}: {phonemes!r}")
    if not phonemes.split():
        raise ValueError("empty phoneme string")
    symbols: list[str] = []
    words: list[tuple[int, int]] = []
    boundaries: list[Boundary] = []
    for word in phonemes.split():
        parts = [s for s in _phoneme_symbols(word) if s not in _SILENT_PUNCTUATION]
        sounds = [s for s in parts if s not in BOUNDARY_KINDS]
        marks = [s for s in parts if s in BOUNDARY_KINDS]
        if parts != sounds + marks:
            raise ValueError(f"punctuation inside the word {word!r} of {phonemes!r}")
        if sounds:
            if symbols:
                symbols.append(BREAK)
            words.append((len(symbols), len(symbols) + len(sounds)))
            symbols.extend(sounds)
        for mark in marks:
            if not words:
                raise ValueError(f"punctuation {mark!r} before any word in {phonemes!r}")
            boundaries.append(Boundary(word=len(words) - 1, symbol=len(symbols), kind=BOUNDARY_KINDS[mark]))
            symbols.append(mark)
    if not words:
        raise ValueError(f"no phonemes in {phonemes!r}")
    return PhrasedText(tuple(symbols), tuple(words), tuple(boundaries))


def _symbol_count(word: str) -> int:
    return len(phrase(word).symbols)


def split_phonemes(phonemes: str, max_symbols: int) -> list[str]:
    """Splits a long IPA string into pieces of at most ``max_symbols`` phrased symbols each
    (breaks included), cutting at phrase boundaries (after a word carrying punctuation) and
    only inside a phrase that alone is too long, between its words. Pieces keep their order;
    joined with spaces they give the input's words back. A single word longer than
    ``max_symbols`` raises ValueError naming it.
    """
    if max_symbols < 1:
        raise ValueError(f"max_symbols must be >= 1, got {max_symbols}")
    phrases: list[list[str]] = [[]]
    for word in phonemes.split():
        phrases[-1].append(word)
        if any(mark in word for mark in BOUNDARY_KINDS):
            phrases.append([])
    pieces: list[list[str]] = []
    size = 0  # phrased symbols in pieces[-1]
    for words in filter(None, phrases):
        counts = [_symbol_count(w) for w in words]
        phrase_size = sum(counts) + len(words) - 1
        if pieces and size + 1 + phrase_size <= max_symbols:
            pieces[-1].extend(words)
            size += 1 + phrase_size
            continue
        pieces.append([])
        size = -1
        for word, count in zip(words, counts):
            if count > max_symbols:
                raise ValueError(f"the word {word!r} has {count} symbols, more than max_symbols={max_symbols}")
            if pieces[-1] and size + 1 + count > max_symbols:
                pieces.append([])
                size = -1
            pieces[-1].append(word)
            size += 1 + count
    if not pieces:
        phrase(phonemes)  # raises the empty-input error
    return [" ".join(piece) for piece in pieces]
