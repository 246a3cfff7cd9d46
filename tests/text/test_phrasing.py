import pytest

from jaxspeech.text import Tokenizer
from jaxspeech.text.phrasing import BREAK, Boundary, phrase, split_phonemes


def test_breaks_words_and_boundaries():
    p = phrase("hˈɛloʊ, wˈɜːld?")
    assert p.symbols == ("h", "ˈ", "ɛ", "l", "o", "ʊ", ",", BREAK, "w", "ˈ", "ɜː", "l", "d", "?")
    assert p.words == ((0, 6), (8, 13))
    assert p.boundaries == (Boundary(0, 6, "comma"), Boundary(1, 13, "question"))


def test_every_word_boundary_gets_exactly_one_break_and_spans_cover_the_phonemes():
    text = "dʒˈuːliə, plˈiːz bˈaɪ ðoʊz hˈæpi dˈɑːlz."
    p = phrase(text)
    assert p.symbols.count(BREAK) == len(text.split()) - 1
    covered = sorted(i for start, end in p.words for i in range(start, end))
    assert covered == [i for i, s in enumerate(p.symbols) if s not in {BREAK, ",", "."}]
    assert [b.kind for b in p.boundaries] == ["comma", "statement"]
    assert [p.words[b.word][1] for b in p.boundaries] == [b.symbol for b in p.boundaries]  # mark follows its word


def test_symbol_indices_are_phoneme_tokenizer_indices():
    p = phrase("ðə kˈæt, sˈæt ˈɒn ðə mˈæt!")
    tokenizer = Tokenizer.from_texts([p.text], "phonemes")
    ids = tokenizer.encode(p.text)
    assert len(ids) == len(p.symbols)
    assert tokenizer.decode(ids) == p.text


def test_silent_punctuation_and_detached_marks():
    p = phrase('"wˈʌn" , tˈuː .')
    assert p.text == "wˈʌn,|tˈuː."
    assert p.boundaries == (Boundary(0, 4, "comma"), Boundary(1, 9, "statement"))


@pytest.mark.parametrize("bad, message", [("", "empty"), ("   ", "empty"), (", wˈʌn", "before any word"),
                                          ("wˈʌn,tˈuː", "inside the word"), ("a|b", "break symbol")])
def test_bad_input_is_named(bad, message):
    with pytest.raises(ValueError, match=message):
        phrase(bad)


PARAGRAPH = "dʒˈuːliə, plˈiːz bˈaɪ ðoʊz hˈæpi dˈɑːlz. wʌzðə klˈɑːk tˈuː ʃˈaɪni?"


@pytest.mark.parametrize("limit", [8, 12, 30, 40, 200])
def test_split_phonemes_keeps_every_word_in_order_within_the_limit(limit):
    pieces = split_phonemes(PARAGRAPH, limit)
    assert " ".join(pieces) == " ".join(PARAGRAPH.split())
    assert all(len(phrase(p).symbols) <= limit for p in pieces)


def test_split_phonemes_cuts_at_phrase_boundaries_first():
    assert split_phonemes(PARAGRAPH, 40) == ["dʒˈuːliə, plˈiːz bˈaɪ ðoʊz hˈæpi dˈɑːlz.", "wʌzðə klˈɑːk tˈuː ʃˈaɪni?"]
    assert split_phonemes(PARAGRAPH, 200) == [PARAGRAPH]
    # a phrase that alone is too long is cut between words
    assert split_phonemes("plˈiːz bˈaɪ ðoʊz hˈæpi dˈɑːlz.", 12) == ["plˈiːz bˈaɪ", "ðoʊz hˈæpi", "dˈɑːlz."]


def test_split_phonemes_rejects_what_cannot_fit():
    with pytest.raises(ValueError, match="more than max_symbols=3"):
        split_phonemes("plˈiːz", 3)
    with pytest.raises(ValueError, match="empty"):
        split_phonemes("   ", 10)
