"""TTS examples: boundary word times, relative log-F0, word contours and the TTS batch."""

import numpy as np

from jaxspeech import audio
from jaxspeech.data.bucketing import make_buckets
from jaxspeech.data.manifest import SkipCounter
from jaxspeech.data.pipeline import SpeechBatches, SpeechDataset
from jaxspeech.data.readers import load_records
from jaxspeech.data.tts import (
    TTSCollate,
    boundary_times,
    boundary_token_spans,
    phrased_record,
    pitch_track,
    relative_to_voiced_mean,
    speaker_of,
    tokenizer_for,
    word_contours,
)
from jaxspeech.text.phrasing import BREAK

RECORD = {
    "id": "x", "audio": "x.wav", "text": "To be honest, Iris will drop the brown necklaces.",
    "phonemes": "təbi ˈɑːnɪst, ˈaɪɹɪs wɪl dɹˈɑːp ðə bɹˈaʊn nˈɛkləsᵻz.",
    "words": [{"word": "To be", "start": 0.0, "end": 0.2}, {"word": "honest", "start": 0.2, "end": 0.6},
              {"word": "Iris", "start": 0.8, "end": 1.1}, {"word": "will", "start": 1.1, "end": 1.3},
              {"word": "drop", "start": 1.3, "end": 1.6}, {"word": "the", "start": 1.6, "end": 1.7},
              {"word": "brown", "start": 1.7, "end": 2.0}, {"word": "necklaces", "start": 2.0, "end": 2.6}],
}


def test_boundary_words_are_the_timed_words_carrying_the_punctuation():
    phrased = phrased_record(RECORD)
    np.testing.assert_allclose(boundary_times(RECORD, phrased), [[0.2, 0.6], [2.0, 2.6]])
    spans = boundary_token_spans(phrased)
    assert [phrased.symbols[end] for _, end in spans] == [",", "."]
    assert "".join(phrased.symbols[spans[0, 0]:spans[0, 1]]) == "ˈɑːnɪst"
    assert "".join(phrased.symbols[spans[1, 0]:spans[1, 1]]) == "nˈɛkləsᵻz"


def test_boundary_times_refuse_what_does_not_match():
    assert boundary_times({**RECORD, "words": []}, phrased_record(RECORD)) is None
    fewer_words = {**RECORD, "words": RECORD["words"][:-1]}
    assert boundary_times(fewer_words, phrased_record(RECORD)) is None
    extra_mark = {**RECORD, "text": RECORD["text"].replace("Iris", "Iris,")}
    assert boundary_times(extra_mark, phrased_record(RECORD)) is None


def test_word_contours_resample_linearly():
    log_f0 = np.arange(100, dtype=np.float64) / 10  # one unit per 10 frames
    contour = word_contours(log_f0, np.array([[0.1, 0.5], [0.9, 0.9]]), frame_rate=100.0, points=5)
    np.testing.assert_allclose(contour[0], np.linspace(1.0, 4.9, 5), rtol=1e-6)  # frames 10..49
    np.testing.assert_allclose(contour[1], 9.0)  # an instant reads its frame


def test_relative_log_f0_follows_a_glide_and_has_zero_voiced_mean():
    preset = audio.get_preset("tts_22k")
    sr, seconds = preset.sample_rate, 1.0
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120.0 * 2.0 ** t  # one octave up over the second
    wave = (0.5 * np.sin(2 * np.pi * np.cumsum(f0) / sr)).astype(np.float32)
    contour = relative_to_voiced_mean(*pitch_track(wave, preset))
    middle = contour[10:-10]
    assert abs(contour.mean()) < 0.05
    slope = np.polyfit(np.arange(len(middle)) * preset.hop_length / sr, middle, 1)[0]
    np.testing.assert_allclose(slope, np.log(2.0), rtol=0.1)  # ln F0 rises ln 2 per second


def test_batches_carry_speakers_boundary_contours_and_the_pitch_track(tiny_corpus):
    records = load_records(tiny_corpus, split="train")
    tokenizer = tokenizer_for(records)
    assert BREAK in tokenizer.symbols
    skips = SkipCounter()
    no_timing = {**records[0], "id": "untimed", "words": []}
    dataset = SpeechDataset(records + [no_timing], preset="tts_22k", skips=skips,
                            labeler=lambda r: tokenizer.encode(phrased_record(r).text))
    speakers = {name: i for i, name in enumerate(sorted({speaker_of(r) for r in records}))}
    collate = TTSCollate(speakers, max_boundaries=2, contour_points=8)
    buckets = make_buckets(dataset.lengths, max_frames=100_000, num_buckets=1)
    batch = next(SpeechBatches(dataset, buckets, shuffle=False, num_threads=1, collate=collate))
    assert batch["boundary_contour"].shape[1:] == (2, 8)
    assert sorted(batch["index"][batch["index"] >= 0]) == list(range(len(dataset)))
    assert not batch["boundary_mask"][batch["index"] < 0].any()
    for row, index in enumerate(batch["index"]):
        if index < 0:
            continue
        record = dataset.records[index]
        assert batch["speaker"][row] == speakers[speaker_of(record)]
        # The pitch track covers the utterance's frames, timed or not, and nothing after them.
        log_f0, voiced = pitch_track(audio.load_audio(record["audio"], sample_rate=22050), dataset.preset)
        frames = int(batch["mel_mask"][row].sum())
        assert len(log_f0) == frames and voiced.any()
        np.testing.assert_allclose(batch["log_f0"][row, :frames], log_f0, rtol=1e-6)
        np.testing.assert_array_equal(batch["voiced"][row, :frames], voiced)
        assert not batch["voiced"][row, frames:].any() and not batch["log_f0"][row, frames:].any()
        tokens = batch["tokens"][row]
        ends = batch["boundary_word_end"][row][batch["boundary_mask"][row]]
        if record["id"] == "untimed":
            assert not batch["boundary_mask"][row].any()
            continue
        expected = boundary_token_spans(phrased_record(record))[-2:]
        np.testing.assert_array_equal(ends, expected[:, 1])
        assert all(tokenizer.symbols[tokens[e]] in ",.?" for e in ends)
        assert np.isfinite(batch["boundary_contour"][row]).all()
    assert skips.counts["no word timings for boundary contours"] == 1


def test_one_collate_keeps_the_boundaries_of_two_datasets_apart(tiny_corpus):
    train, valid = (load_records(tiny_corpus, split=split) for split in ("train", "valid"))
    tokenizer = tokenizer_for(train + valid)
    labeler = lambda r: tokenizer.encode(phrased_record(r).text)  # noqa: E731
    datasets = [SpeechDataset(records, preset="tts_22k", labeler=labeler) for records in (train, valid)]
    collate = TTSCollate({speaker_of(r): 0 for r in train + valid}, max_boundaries=4, contour_points=8)
    for dataset in datasets:
        for index in range(len(valid)):
            spans = collate.prosody(dataset, index).spans
            np.testing.assert_array_equal(spans, boundary_token_spans(phrased_record(dataset.records[index]))[-4:])
