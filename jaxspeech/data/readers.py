"""Readers for speech corpora on disk, all returning the same record dicts.

A record is ``{"id", "audio" (absolute path), "text", "speaker"}`` plus, where the source has
them, ``duration`` and the embedded corpus's other fields. Readers never crash on a missing
audio file or a malformed line: they count it in a :class:`SkipCounter`, log it and go on.

- :func:`read_ljspeech`: ``root/metadata.csv`` (``id|text|normalized text``), ``root/wavs/<id>.wav``.
- :func:`read_librispeech`: ``root/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` (``ID TEXT``
  lines) beside ``<ID>.flac``.
- :func:`read_libritts`: ``root/<speaker>/<chapter>/<ID>.wav`` with ``<ID>.normalized.txt``
  (or ``<ID>.original.txt``).
- :func:`load_records`: picks one of the above, or a JSONL manifest, or a split of the
  embedded corpus, from what ``source`` looks like.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from jaxspeech.data.manifest import SkipCounter, read_manifest

LJSPEECH_SPEAKER = "ljspeech"


def _finish(records: list[dict], counter: SkipCounter, owned: bool) -> list[dict]:
    if owned:
        counter.summary()
    return sorted(records, key=lambda r: r["id"])


def _check_directory(root: str | os.PathLike) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"corpus directory not found: {path}")
    return path.resolve()


def read_ljspeech(root: str | os.PathLike, skips: SkipCounter | None = None) -> list[dict]:
    """LJSpeech-1.1 layout; uses the normalised text (third field) when present. Sorted by id."""
    root = _check_directory(root)
    metadata = root / "metadata.csv"
    if not metadata.is_file():
        raise FileNotFoundError(f"{metadata} not found: not an LJSpeech directory")
    counter = skips if skips is not None else SkipCounter(f"LJSpeech lines in {root}")
    records = []
    with open(metadata, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            where = f"{metadata}:{number}"
            # Split on '|' by hand: the texts contain quote characters a CSV parser would eat.
            fields = line.split("|")
            if len(fields) < 2 or not fields[0].strip():
                counter.skip("expected id|text|normalized_text", where)
                continue
            uid = fields[0].strip()
            normalized = fields[2].strip() if len(fields) > 2 else ""
            text = normalized or fields[1].strip()
            if not text:
                counter.skip("empty text", where)
                continue
            audio = root / "wavs" / f"{uid}.wav"
            if not audio.is_file():
                counter.skip("missing audio file", where)
                continue
            records.append({"id": uid, "audio": str(audio), "text": text, "speaker": LJSPEECH_SPEAKER})
    return _finish(records, counter, skips is None)


def read_librispeech(root: str | os.PathLike, skips: SkipCounter | None = None) -> list[dict]:
    """LibriSpeech layout (e.g. ``LibriSpeech/train-clean-100``); speaker = speaker directory."""
    root = _check_directory(root)
    counter = skips if skips is not None else SkipCounter(f"LibriSpeech lines in {root}")
    records = []
    for transcript in sorted(root.rglob("*.trans.txt")):
        speaker = transcript.parent.parent.name
        with open(transcript, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{transcript}:{number}"
                uid, _, text = line.strip().partition(" ")
                if not text.strip():
                    counter.skip("expected 'ID TEXT'", where)
                    continue
                audio = transcript.parent / f"{uid}.flac"
                if not audio.is_file():
                    counter.skip("missing audio file", where)
                    continue
                records.append({"id": uid, "audio": str(audio), "text": text.strip(), "speaker": speaker})
    return _finish(records, counter, skips is None)


def read_libritts(root: str | os.PathLike, skips: SkipCounter | None = None) -> list[dict]:
    """LibriTTS layout; text from ``<ID>.normalized.txt``, else ``<ID>.original.txt``."""
    root = _check_directory(root)
    counter = skips if skips is not None else SkipCounter(f"LibriTTS utterances in {root}")
    transcripts: dict[Path, Path] = {}  # audio path -> transcript, normalized preferred
    for suffix in (".original.txt", ".normalized.txt"):
        for path in root.rglob(f"*{suffix}"):
            transcripts[path.with_name(path.name[: -len(suffix)] + ".wav")] = path
    records = []
    for audio, transcript in sorted(transcripts.items()):
        where = str(transcript)
        text = transcript.read_text(encoding="utf-8").strip()
        if not text:
            counter.skip("empty text", where)
            continue
        if not audio.is_file():
            counter.skip("missing audio file", where)
            continue
        uid = audio.name[: -len(".wav")]
        records.append({"id": uid, "audio": str(audio), "text": text, "speaker": audio.parent.parent.name})
    return _finish(records, counter, skips is None)


def _embedded_split(root: Path, split: str | None, skips: SkipCounter | None) -> list[dict]:
    with open(root / "corpus.json", encoding="utf-8") as f:
        summary = json.load(f)
    available = sorted(summary.get("splits", {}))
    if split not in available:
        raise ValueError(f"{root} is a jaxspeech corpus: pass split= one of {', '.join(available)} (got {split!r})")
    return read_manifest(root / summary["splits"][split]["manifest"], skips)


def _first(root: Path, pattern: str) -> Path | None:
    return next(iter(root.rglob(pattern)), None)


def load_records(source: str | os.PathLike, split: str | None = None,
                 skips: SkipCounter | None = None) -> list[dict]:
    """Records from ``source``, whatever its kind.

    - a ``.jsonl`` file: :func:`~jaxspeech.data.manifest.read_manifest` (``split`` must be None);
    - a directory with ``corpus.json`` (the embedded corpus): the manifest of ``split``
      (required; the error lists the available splits);
    - any other directory: LJSpeech (``metadata.csv``), else LibriSpeech (``*.trans.txt``
      anywhere below), else LibriTTS (``*.normalized.txt`` / ``*.original.txt``). There
      ``split``, if given, names a subdirectory to read (e.g. ``"train-clean-100"``).

    Skipped items are counted in ``skips`` (a new counter, summarised at the end, if None).
    """
    path = Path(source)
    if path.is_file():
        if path.suffix != ".jsonl":
            raise ValueError(f"{path}: expected a .jsonl manifest or a corpus directory")
        if split is not None:
            raise ValueError(f"split={split!r} does not apply to a manifest file ({path})")
        return read_manifest(path, skips)
    if not path.is_dir():
        raise FileNotFoundError(f"no such manifest or corpus directory: {path}")
    if (path / "corpus.json").is_file():
        return _embedded_split(path, split, skips)
    if split is not None:
        subsets = sorted(p.name for p in path.iterdir() if p.is_dir())
        if not (path / split).is_dir():
            raise ValueError(f"split {split!r} is not a subdirectory of {path}; found: {', '.join(subsets) or 'none'}")
        path = path / split
    if (path / "metadata.csv").is_file():
        return read_ljspeech(path, skips)
    if _first(path, "*.trans.txt"):
        return read_librispeech(path, skips)
    if _first(path, "*.normalized.txt") or _first(path, "*.original.txt"):
        return read_libritts(path, skips)
    raise ValueError(
        f"cannot tell what corpus {path} is: looked for corpus.json (jaxspeech corpus), metadata.csv (LJSpeech), "
        f"*.trans.txt (LibriSpeech) and *.normalized.txt / *.original.txt (LibriTTS)"
    )
