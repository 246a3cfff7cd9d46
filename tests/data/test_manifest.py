import json
import logging
import os

import pytest

from jaxspeech.data.manifest import SkipCounter, read_manifest, write_manifest


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    return path


def test_read_manifest_skips_and_counts_malformed_lines(tmp_path, caplog):
    _touch(tmp_path / "wavs" / "a.wav")
    _touch(tmp_path / "wavs" / "b.wav")
    lines = [
        json.dumps({"id": "a", "audio": "wavs/a.wav", "text": "Hello there.", "speaker": "s1", "duration": 1.5}),
        "{not json",
        json.dumps({"id": "c", "audio": "wavs/a.wav"}),  # no text
        json.dumps({"id": "d", "audio": "wavs/a.wav", "text": "   "}),
        json.dumps(["a", "list"]),
        json.dumps({"id": "e", "audio": "wavs/missing.wav", "text": "Gone."}),
        "",
        json.dumps({"id": "b", "audio": str(tmp_path / "wavs" / "b.wav"), "text": "Absolute path."}),
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    skips = SkipCounter()
    with caplog.at_level(logging.WARNING, logger="jaxspeech.data.manifest"):
        records = read_manifest(manifest, skips)
    assert [r["id"] for r in records] == ["a", "b"]
    assert records[0]["audio"] == str(tmp_path / "wavs" / "a.wav")
    assert os.path.isabs(records[1]["audio"])
    assert records[0]["speaker"] == "s1" and records[1]["speaker"] == "unknown"
    assert records[0]["duration"] == 1.5
    assert skips.total == 5
    assert skips.counts["empty text"] == 1 and skips.counts["missing audio file"] == 1
    assert skips.counts["missing field(s) text"] == 1
    assert any(r.startswith("bad JSON") for r in skips.counts)
    assert any(r.startswith("not a JSON object") for r in skips.counts)
    assert f"{manifest}:2" in caplog.text and f"{manifest}:6" in caplog.text  # file:line of the skips
    summary = skips.summary()
    assert summary.startswith("skipped 5 records:") and "empty text (1)" in summary


def test_read_manifest_logs_summary_with_own_counter(tmp_path, caplog):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("{bad\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="jaxspeech.data.manifest"):
        assert read_manifest(manifest) == []
    assert "skipped 1 lines of" in caplog.text


def test_read_manifest_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")


def test_write_manifest_is_deterministic_and_round_trips(tmp_path):
    _touch(tmp_path / "wavs" / "x.wav")
    records = [
        {"text": "Où est la gare?", "id": "x", "audio": str(tmp_path / "wavs" / "x.wav"), "duration": 0.1 + 0.2},
        {"id": "y", "audio": "/elsewhere/y.wav", "text": "Far away.", "speaker": "s"},
    ]
    first, second = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    write_manifest(first, records)
    write_manifest(second, [dict(reversed(list(r.items()))) for r in records])  # key order must not matter
    assert first.read_bytes() == second.read_bytes()
    lines = first.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["audio"] == "wavs/x.wav"  # made relative to the manifest directory
    assert json.loads(lines[1])["audio"] == "/elsewhere/y.wav"
    assert "Où" in lines[0]  # UTF-8, not escaped
    assert list(json.loads(lines[0])) == sorted(json.loads(lines[0]))
    back = read_manifest(first)
    assert back == [{**records[0], "speaker": "unknown"}]  # y's audio does not exist: skipped


def test_write_manifest_rejects_bad_records(tmp_path):
    with pytest.raises(ValueError, match="missing field"):
        write_manifest(tmp_path / "m.jsonl", [{"id": "a", "text": "no audio"}])
    with pytest.raises(ValueError, match="empty text"):
        write_manifest(tmp_path / "m.jsonl", [{"id": "a", "audio": "a.wav", "text": ""}])


def test_skip_counter_logs_first_warnings_then_debug(caplog):
    counter = SkipCounter("items", log_first=2)
    with caplog.at_level(logging.DEBUG, logger="jaxspeech.data.manifest"):
        for i in range(4):
            counter.skip("broken", f"f:{i}")
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert counter.total == 4 and counter.summary() == "skipped 4 items: broken (4)"
    assert SkipCounter().summary() == ""
