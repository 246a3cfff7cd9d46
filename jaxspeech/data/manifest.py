"""JSONL speech manifests and the skip counter shared by every data stage.

A manifest has one JSON object per line; each object is a record with at least ``id``,
``audio`` (a path, relative to the manifest's directory or absolute) and ``text``. Optional
fields: ``speaker`` (default ``"unknown"``), ``duration`` (seconds), ``phonemes``, ``kind``,
``words``, ``phones``, ``sample_rate`` and anything else, which is passed through unchanged.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
from collections.abc import Iterable

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("id", "audio", "text")
DEFAULT_SPEAKER = "unknown"


class SkipCounter:
    """Counts and logs items a data stage drops, so nothing disappears silently.

    ``skip(reason, where)`` logs one line (the first ``log_first`` at WARNING, the rest at DEBUG
    so a badly broken corpus does not flood the log); ``summary()`` logs and returns one line with
    the counts per reason. Thread-safe: pipeline stages call it from loader threads.
    """

    def __init__(self, what: str = "records", *, log_first: int = 10):
        self.what = what
        self.log_first = log_first
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def skip(self, reason: str, where: str) -> None:
        with self._lock:
            self.counts[reason] += 1
            level = logging.WARNING if self.total <= self.log_first else logging.DEBUG
        log.log(level, "skipped %s: %s", where, reason)

    def summary(self) -> str:
        """'skipped N records: reason (n), ...' (logged as a warning when N > 0), or ''."""
        with self._lock:
            if not self.counts:
                return ""
            reasons = ", ".join(f"{reason} ({n})" for reason, n in sorted(self.counts.items()))
            message = f"skipped {self.total} {self.what}: {reasons}"
        log.warning(message)
        return message


def _problem(record, line_text: str) -> str | None:
    """Why a parsed line is not a usable record, or None."""
    if not isinstance(record, dict):
        return f"not a JSON object: {line_text[:60]!r}"
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    for key in REQUIRED_FIELDS:
        if not isinstance(record[key], str):
            return f"field {key} is not a string"
    if not record["text"].strip():
        return "empty text"
    if not record["audio"].strip():
        return "empty audio path"
    return None


def read_manifest(path: str | os.PathLike, skips: SkipCounter | None = None) -> list[dict]:
    """Records of a JSONL manifest, in file order, with ``audio`` resolved to an absolute path.

    Lines that are not JSON objects, lack id/audio/text, have empty text, or name an audio file
    that does not exist are skipped, counted in ``skips`` (a new counter if None) and logged
    with ``file:line``; a summary warning follows when anything was skipped. ``speaker``
    defaults to ``"unknown"``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"manifest not found: {path}")
    counter = skips if skips is not None else SkipCounter(f"lines of {path}")
    base = os.path.dirname(os.path.abspath(path))
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                counter.skip(f"bad JSON ({e.msg})", where)
                continue
            problem = _problem(record, line)
            if problem:
                counter.skip(problem, where)
                continue
            audio = os.path.normpath(os.path.join(base, record["audio"]))
            if not os.path.isfile(audio):
                counter.skip("missing audio file", where)
                continue
            records.append({**record, "audio": audio, "speaker": record.get("speaker") or DEFAULT_SPEAKER})
    if skips is None:
        counter.summary()
    return records


def write_manifest(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Writes ``records`` as JSONL, deterministically (sorted keys, one object per line).

    An absolute ``audio`` path inside the manifest's directory is written relative to it, so a
    read -> write round trip keeps the corpus relocatable. The file is replaced atomically.
    """
    path = os.fspath(path)
    base = os.path.dirname(os.path.abspath(path))
    lines = []
    for record in records:
        problem = _problem(record, repr(record))
        if problem:
            raise ValueError(f"cannot write record {record.get('id', '?') if isinstance(record, dict) else record!r}: "
                             f"{problem}")
        audio = record["audio"]
        if os.path.isabs(audio) and os.path.commonpath([base, os.path.abspath(audio)]) == base:
            record = {**record, "audio": os.path.relpath(audio, base).replace(os.sep, "/")}
        lines.append(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(lines)
    os.replace(temporary, path)
