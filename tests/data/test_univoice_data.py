"""UniVoice rows from corpus records: the vocabulary, each task's tokens and targets, mixed batches."""

import numpy as np
import pytest

from jaxspeech.data.pipeline import SpeechDataset
from jaxspeech.data.readers import load_records
from jaxspeech.data.univoice import (
    ASR,
    EOS,
    TTS,
    PretrainedVocabulary,
    spoken_text,
    symbol_id,
    task_records,
    univoice_collate,
    univoice_labeler,
    univoice_tokenizer,
)
from jaxspeech.text import Tokenizer


def test_spoken_text_keeps_the_punctuation_that_shapes_prosody():
    assert spoken_text("Did you see 42 red boats?") == "did you see forty two red boats?"
    assert spoken_text("Well , the old-fashioned clock,  it ran!") == "well, the old fashioned clock, it ran!"
    assert spoken_text("Stop.Go!") == "stop. go!"


def test_each_record_gives_an_asr_row_and_a_tts_row():
    tokenizer = univoice_tokenizer(["Did you see 42 red boats?", "A cat, sitting."])
    asr, tts, eos = (symbol_id(tokenizer, s) for s in (ASR, TTS, EOS))
    assert (asr, tts, eos) == (2, 3, 1) and tokenizer.symbols[0] == "<blank>"
    label = univoice_labeler(tokenizer)
    record = {"text": "A cat, sitting."}
    asr_row, tts_row = (label(r) for r in task_records([record]))
    assert asr_row[0] == asr and asr_row[-1] == eos and tokenizer.decode(asr_row[1:-1]) == "a cat sitting"
    assert tts_row[0] == tts and tokenizer.decode(tts_row[1:]) == "a cat, sitting."
    with pytest.raises(ValueError, match="not a UniVoice vocabulary"):
        symbol_id(Tokenizer.from_texts(["abc"]), EOS)
    with pytest.raises(ValueError, match="unknown tasks"):
        task_records([record], ["asr", "vc"])


def test_mixed_batches_mark_tasks_and_targets(tiny_corpus):
    records = load_records(tiny_corpus, split="train")[:6]
    tokenizer = univoice_tokenizer(r["text"] for r in records)
    dataset = SpeechDataset(task_records(records), preset="tts_22k", labeler=univoice_labeler(tokenizer))
    rows = np.array([0, 1, 2, -1])  # ASR row, TTS row (same utterance), ASR row, filler
    batch = univoice_collate(dataset, rows, frames=int(dataset.lengths.max()), label_len=80)
    np.testing.assert_array_equal(batch["tts"], [False, True, False, False])
    np.testing.assert_array_equal(batch["mel"][0], batch["mel"][1])  # one utterance, both tasks
    lengths = batch["token_mask"].sum(1)
    np.testing.assert_array_equal(batch["target_mask"].sum(1), [lengths[0] - 1, 0, lengths[2] - 1, 0])
    assert not batch["target_mask"][:, 0].any()  # the task symbol is never a target


def test_a_pretrained_tokenizer_gets_the_task_symbols(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer as Fast
    from tokenizers import decoders, models, pre_tokenizers, trainers

    bpe = Fast(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["did you see the red boats"] * 5, trainers.BpeTrainer(
        vocab_size=80, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    base = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    size = len(base)
    vocabulary = PretrainedVocabulary(base)
    assert vocabulary.vocab_size == size + 2 and symbol_id(vocabulary, EOS) == base.eos_token_id
    assert {symbol_id(vocabulary, ASR), symbol_id(vocabulary, TTS)} == {size, size + 1}
    label = univoice_labeler(vocabulary)
    asr_row, tts_row = (label(r) for r in task_records([{"text": "Did you see the red boats?"}]))
    assert asr_row[0] == symbol_id(vocabulary, ASR) and asr_row[-1] == base.eos_token_id
    assert vocabulary.decode(asr_row) == "did you see the red boats"  # the task symbols are special tokens
    assert vocabulary.decode(tts_row[1:]) == "did you see the red boats?"
    vocabulary.save(tmp_path)
    from jaxspeech.models.llm import load_tokenizer

    again = PretrainedVocabulary(load_tokenizer(tmp_path))
    assert again.vocab_size == vocabulary.vocab_size and symbol_id(again, TTS) == symbol_id(vocabulary, TTS)
