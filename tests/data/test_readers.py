import json

import numpy as np
import pytest
import soundfile

from jaxspeech.data import readers
from jaxspeech.data.manifest import SkipCounter


def _audio(path, seconds=0.1, sample_rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    soundfile.write(str(path), 0.1 * np.sin(2 * np.pi * 220 * t), sample_rate)
    return path


@pytest.fixture
def ljspeech(tmp_path):
    root = tmp_path / "LJSpeech-1.1"
    for uid in ("LJ001-0001", "LJ001-0002", "LJ001-0004"):
        _audio(root / "wavs" / f"{uid}.wav")
    (root / "metadata.csv").write_text(
        'LJ001-0001|Printing, in the only sense "with which" we are|Printing, in the only sense "with which" we are\n'
        "LJ001-0002|in 1820 they|in eighteen twenty they\n"
        "LJ001-0003|no audio for this one|no audio for this one\n"
        "LJ001-0004|only the raw text\n"
        "garbage line without separators\n"
        "LJ001-0005||\n",
        encoding="utf-8",
    )
    return root


@pytest.fixture
def librispeech(tmp_path):
    root = tmp_path / "LibriSpeech" / "train-clean-100"
    chapter = root / "19" / "198"
    _audio(chapter / "19-198-0000.flac")
    _audio(chapter / "19-198-0001.flac")
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0000 NORTHANGER ABBEY\n19-198-0001 CHAPTER ONE\n19-198-0002 THIS FLAC IS MISSING\n", encoding="utf-8")
    other = root / "26" / "495"
    _audio(other / "26-495-0000.flac")
    (other / "26-495.trans.txt").write_text("26-495-0000 A SECOND SPEAKER\n", encoding="utf-8")
    return root


@pytest.fixture
def libritts(tmp_path):
    root = tmp_path / "LibriTTS" / "dev-clean"
    chapter = root / "84" / "121123"
    _audio(chapter / "84_121123_000007_000001.wav")
    (chapter / "84_121123_000007_000001.normalized.txt").write_text("Go, do you hear?", encoding="utf-8")
    (chapter / "84_121123_000007_000001.original.txt").write_text("Go, do you hear ?", encoding="utf-8")
    _audio(chapter / "84_121123_000008_000000.wav")
    (chapter / "84_121123_000008_000000.original.txt").write_text("Only the original.", encoding="utf-8")
    (chapter / "84_121123_000009_000000.normalized.txt").write_text("No wav here.", encoding="utf-8")
    return root


def test_read_ljspeech_uses_normalized_text_and_skips_bad_lines(ljspeech):
    skips = SkipCounter()
    records = readers.read_ljspeech(ljspeech, skips)
    assert [r["id"] for r in records] == ["LJ001-0001", "LJ001-0002", "LJ001-0004"]
    assert records[0]["text"] == 'Printing, in the only sense "with which" we are'  # quotes kept
    assert records[1]["text"] == "in eighteen twenty they"
    assert records[2]["text"] == "only the raw text"
    assert all(r["speaker"] == "ljspeech" for r in records)
    assert records[1]["audio"] == str((ljspeech / "wavs" / "LJ001-0002.wav").resolve())
    assert skips.counts == {"missing audio file": 1, "expected id|text|normalized_text": 1, "empty text": 1}


def test_read_librispeech(librispeech):
    skips = SkipCounter()
    records = readers.read_librispeech(librispeech, skips)
    assert [(r["id"], r["speaker"], r["text"]) for r in records] == [
        ("19-198-0000", "19", "NORTHANGER ABBEY"),
        ("19-198-0001", "19", "CHAPTER ONE"),
        ("26-495-0000", "26", "A SECOND SPEAKER"),
    ]
    assert records[0]["audio"].endswith("19/198/19-198-0000.flac")
    assert soundfile.info(records[0]["audio"]).samplerate == 16000
    assert skips.counts == {"missing audio file": 1}


def test_read_libritts_prefers_normalized_text(libritts):
    skips = SkipCounter()
    records = readers.read_libritts(libritts, skips)
    assert [(r["id"], r["text"], r["speaker"]) for r in records] == [
        ("84_121123_000007_000001", "Go, do you hear?", "84"),
        ("84_121123_000008_000000", "Only the original.", "84"),
    ]
    assert skips.counts == {"missing audio file": 1}


def test_load_records_detects_each_layout(ljspeech, librispeech, libritts):
    assert len(readers.load_records(ljspeech)) == 3
    assert len(readers.load_records(librispeech)) == 3
    assert len(readers.load_records(librispeech.parent, split="train-clean-100")) == 3
    assert len(readers.load_records(libritts)) == 2
    with pytest.raises(ValueError, match="found: train-clean-100"):
        readers.load_records(librispeech.parent, split="dev-other")


def test_load_records_manifest_and_errors(tmp_path):
    _audio(tmp_path / "a.wav")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": "a.wav", "text": "hi"}) + "\nnot json\n", encoding="utf-8")
    skips = SkipCounter()
    records = readers.load_records(manifest, skips=skips)
    assert [r["id"] for r in records] == ["a"] and skips.total == 1
    with pytest.raises(ValueError, match="does not apply"):
        readers.load_records(manifest, split="train")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="expected a .jsonl"):
        readers.load_records(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="no such"):
        readers.load_records(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"metadata.csv \(LJSpeech\), \*.trans.txt"):
        readers.load_records(empty)


def test_load_records_embedded_corpus_requires_a_known_split(tmp_path):
    _audio(tmp_path / "wavs" / "train-000000.wav")
    (tmp_path / "train.jsonl").write_text(
        json.dumps({"id": "train-000000", "audio": "wavs/train-000000.wav", "text": "Hi there."}) + "\n")
    (tmp_path / "corpus.json").write_text(json.dumps(
        {"splits": {"train": {"manifest": "train.jsonl"}, "valid": {"manifest": "valid.jsonl"}}}))
    assert [r["id"] for r in readers.load_records(tmp_path, split="train")] == ["train-000000"]
    with pytest.raises(ValueError, match="one of train, valid"):
        readers.load_records(tmp_path)
