import numpy as np
import pytest
import soundfile

from jaxspeech import audio
from jaxspeech.data.bucketing import make_buckets
from jaxspeech.data.manifest import SkipCounter
from jaxspeech.data.pipeline import SpeechBatches, SpeechDataset
from jaxspeech.data.readers import load_records
from jaxspeech.text import Tokenizer, normalize_for_asr


@pytest.fixture
def dataset(tiny_corpus):
    records = load_records(tiny_corpus, split="train")
    tok = Tokenizer.from_texts([normalize_for_asr(r["text"]) for r in records])
    return SpeechDataset(records, preset="tts_22k", labeler=lambda r: tok.encode(normalize_for_asr(r["text"])))


def test_features_match_log_mel_of_the_file(dataset):
    i = 3
    wave = audio.load_audio(dataset.records[i]["audio"], sample_rate=22050)
    expected = np.asarray(audio.log_mel(wave, "tts_22k"))
    got = dataset.features(i)
    assert got.shape == expected.shape == (dataset.lengths[i], 80)
    # zero-padding to the jit chunk only changes the last frames' reflect padding
    np.testing.assert_allclose(got[:-2], expected[:-2], atol=1e-4)


def test_batches_have_bucket_shapes_masks_and_labels(dataset):
    buckets = make_buckets(dataset.lengths, max_frames=2048, num_buckets=3, row_multiple=2)
    batches = SpeechBatches(dataset, buckets, seed=0)
    seen = []
    for _ in range(batches.batches_per_epoch):
        b = next(batches)
        rows, frames = b["mel_mask"].shape
        assert (rows, frames) in set(zip(buckets.sizes, buckets.lengths))
        for r, i in enumerate(b["index"]):
            if i < 0:
                assert not b["mel_mask"][r].any() and not b["token_mask"][r].any()
                continue
            seen.append(int(i))
            assert b["mel_mask"][r].sum() == dataset.lengths[i]
            np.testing.assert_array_equal(b["tokens"][r][b["token_mask"][r]], dataset.labels[i])
            assert np.all(b["mel"][r][~b["mel_mask"][r]] == 0)
    assert sorted(seen) == list(range(len(dataset)))


def test_iterator_state_resumes_on_the_same_batch(dataset):
    buckets = make_buckets(dataset.lengths, max_frames=2048, num_buckets=3)
    a = SpeechBatches(dataset, buckets, seed=1)
    for _ in range(5):
        next(a)
    state = a.get_state()
    expected = [next(a)["index"] for _ in range(3)]
    b = SpeechBatches(dataset, buckets, seed=1)
    b.set_state(state)
    for want in expected:
        np.testing.assert_array_equal(next(b)["index"], want)


def test_processes_split_each_global_batch(dataset):
    buckets = make_buckets(dataset.lengths, max_frames=2048, num_buckets=3, row_multiple=2)
    whole = next(SpeechBatches(dataset, buckets, seed=2))
    parts = [next(SpeechBatches(dataset, buckets, seed=2, process_index=p, process_count=2)) for p in range(2)]
    np.testing.assert_array_equal(np.concatenate([p["index"] for p in parts]), whole["index"])


def test_bad_records_are_counted_not_fatal(tiny_corpus, tmp_path):
    records = load_records(tiny_corpus, split="train")[:4]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wav")
    empty = dict(records[1], id="empty", text="?!")
    missing = dict(records[2], id="missing", audio=str(tmp_path / "missing.wav"))
    broken = dict(records[3], id="broken", audio=str(corrupt))
    tok = Tokenizer.from_texts(["xyz"])  # the transcript's letters are unknown
    skips = SkipCounter()
    ds = SpeechDataset([records[0], empty, missing, broken], preset="tts_22k",
                       labeler=lambda r: np.asarray([1] * len(normalize_for_asr(r["text"])), np.int32), skips=skips)
    assert len(ds) == 1 and skips.counts["empty transcript"] == 1 and skips.total == 3
    assert ds.features(0) is not None
    with pytest.raises(ValueError, match="no usable records"):
        SpeechDataset([records[0]], preset="tts_22k", labeler=lambda r: tok.encode(r["text"]))


def test_resampled_and_stereo_input(tmp_path):
    sr = 16000
    t = np.arange(sr) / sr
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1).astype(np.float32) * 0.3
    soundfile.write(tmp_path / "a.wav", stereo, sr)
    ds = SpeechDataset([{"id": "a", "audio": str(tmp_path / "a.wav"), "text": ""}], preset="tts_22k", labeler=None)
    mel = ds.features(0)
    assert mel.shape == (ds.lengths[0], 80) and abs(ds.lengths[0] - audio.num_frames(22050, "tts_22k")) <= 1
