import numpy as np
import pytest

from jaxspeech.text import Tokenizer, UnknownSymbolError, normalize_for_asr
from jaxspeech.text.tokenizer import BLANK


def test_normalize_spells_numbers_and_strips_punctuation():
    assert normalize_for_asr("Did you see 42 red boats?") == "did you see forty two red boats"
    assert normalize_for_asr("After 3 days, the old-farmer's  café!") == "after three days the old farmer's cafe"
    assert normalize_for_asr("1999") == "one thousand nine hundred and ninety nine"


def test_chars_roundtrip_and_blank_is_zero(tmp_path):
    tok = Tokenizer.from_texts(["hello world", "the cat"], "chars")
    assert tok.symbols[0] == BLANK and 0 not in tok.encode("hello")
    ids = tok.encode("the world")
    assert ids.dtype == np.int32 and tok.decode(ids) == "the world"
    tok.save(tmp_path / "vocab.json")
    assert Tokenizer.load(tmp_path / "vocab.json") == tok


def test_unknown_symbols_are_named():
    tok = Tokenizer.from_texts(["abc"], "chars")
    with pytest.raises(UnknownSymbolError, match=r"\['x', 'z'\]"):
        tok.encode("abxz")
    assert tok.unknown_symbols("zabx") == ["z", "x"]


def test_configured_replacement_symbol():
    tok = Tokenizer.from_texts(["abc"], "chars", unknown="?")
    assert tok.decode(tok.encode("axc")) == "a?c"


def test_phoneme_symbols_keep_length_marks_and_split_stress():
    tok = Tokenizer.from_texts(["dˈɪd juː"], "phonemes")
    assert "uː" in tok.symbols and "ˈ" in tok.symbols
    assert tok.decode(tok.encode("juː dˈɪd")) == "juː dˈɪd"
    assert len(tok.encode("juː")) == 2


def test_invalid_vocab_is_rejected():
    with pytest.raises(ValueError, match="symbols\\[0\\]"):
        Tokenizer("chars", ("a", "b"))
    with pytest.raises(ValueError, match="duplicate"):
        Tokenizer("chars", (BLANK, "a", "a"))
    with pytest.raises(ValueError, match="kind"):
        Tokenizer("words", (BLANK, "a"))
