import pytest

from jaxspeech.eval import error_rates


def test_error_rates_are_corpus_level_edit_ratios():
    # "hello world" -> "hello word": 1 char deletion of 11, 1 word substitution of 2;
    # "the cat" -> "": 7 char and 2 word deletions. Totals: 8/18 chars, 3/4 words.
    r = error_rates(["Hello world!", "the cat"], ["hello word", ""])
    assert r["cer"] == pytest.approx(8 / 18) and r["wer"] == pytest.approx(3 / 4)


def test_numbers_are_compared_as_spoken():
    assert error_rates(["I have 42 apples."], ["i have forty two apples"])["cer"] == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="2 references but 1"):
        error_rates(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="non-empty"):
        error_rates(["?!"], ["a"])
