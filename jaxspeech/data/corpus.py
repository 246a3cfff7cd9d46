"""The embedded speech corpus: grammar sentences spoken by eSpeak NG voices.

Layout of a built corpus directory::

    corpus.json                 summary (version, seed, size, sample rate, speakers, per-split counts)
    train.jsonl valid.jsonl test-seen.jsonl test-unseen.jsonl
    wavs/<id>.wav               16-bit PCM mono at 22050 Hz

Splits (about 85/5/5/5 %): ``train``, ``valid`` and ``test-seen`` use the training voices;
``test-unseen`` uses held-out voices. Voice sets: ``"default"`` is 12 American voices for training and
3 held out; ``"many"`` (for zero-shot voice cloning, which needs many training voices) pairs every
usable eSpeak NG voice variant with two English accents, each pair with its own prosody ranges, and
holds out whole variants (the default's held-out ones among them) for ``test-unseen``. Every split
has its own sentences, so a test sentence is never heard in training. Manifest records (see
:mod:`jaxspeech.data.manifest`)::

    {"id": "train-000123", "audio": "wavs/train-000123.wav", "sample_rate": 22050,
     "duration": 2.345, "text": "Did you see 42 red boats?", "phonemes": "dˈɪd juː ...",
     "speaker": "en-us+f3", "kind": "question",
     "words": [{"word": "Did", "start": 0.0, "end": 0.207}, ...],
     "phones": [{"phone": "d", "start": 0.012, "end": 0.033}, ...]}

Times are seconds rounded to milliseconds; ``phones`` names pauses ``"_"``.

Reproducibility: the same seed gives byte-identical manifests and wav files whatever the
number of workers. eSpeak's wave generator carries hidden state from one utterance to the next,
so each utterance is synthesised in a child forked from a worker that has initialised eSpeak
and synthesised nothing (see :mod:`jaxspeech.data.espeak`); this needs ``os.fork`` (Linux,
macOS).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import pickle
import random
import shutil
import time
import traceback
import wave

from jaxspeech.data import espeak, sentences
from jaxspeech.data.manifest import write_manifest

log = logging.getLogger(__name__)

VERSION = 1
SPLITS = ("train", "valid", "test-seen", "test-unseen")
HELD_OUT_FRACTION = 0.05  # of utterances, for each of valid, test-seen and test-unseen
DEFAULT_SIZE = 1520  # about one hour of audio (measured: 2.38 s per utterance on average)


@dataclasses.dataclass(frozen=True)
class Speaker:
    """An eSpeak voice (``name``, e.g. ``"en-us+m3"``) with its own prosody ranges (inclusive)."""

    name: str
    rate: tuple[int, int]  # words per minute
    pitch: tuple[int, int]  # eSpeak base pitch, 0..100
    pitch_range: tuple[int, int]  # eSpeak pitch range, 0..100


TRAIN_SPEAKERS = (
    Speaker("en-us+m1", rate=(150, 180), pitch=(35, 50), pitch_range=(40, 60)),
    Speaker("en-us+m2", rate=(160, 190), pitch=(40, 55), pitch_range=(45, 70)),
    Speaker("en-us+m4", rate=(140, 170), pitch=(30, 45), pitch_range=(35, 55)),
    Speaker("en-us+m5", rate=(165, 195), pitch=(45, 60), pitch_range=(50, 75)),
    Speaker("en-us+m6", rate=(145, 175), pitch=(40, 55), pitch_range=(30, 50)),
    Speaker("en-us+m8", rate=(155, 185), pitch=(35, 55), pitch_range=(55, 80)),
    Speaker("en-us+f1", rate=(150, 180), pitch=(45, 60), pitch_range=(45, 65)),
    Speaker("en-us+f2", rate=(160, 190), pitch=(50, 65), pitch_range=(50, 75)),
    Speaker("en-us+f4", rate=(145, 175), pitch=(40, 55), pitch_range=(40, 60)),
    Speaker("en-us+f5", rate=(155, 185), pitch=(50, 70), pitch_range=(55, 80)),
    Speaker("en-us+Annie", rate=(150, 180), pitch=(40, 55), pitch_range=(40, 60)),
    Speaker("en-us+travis", rate=(145, 175), pitch=(45, 60), pitch_range=(45, 65)),
)
UNSEEN_SPEAKERS = (
    Speaker("en-us+m3", rate=(150, 180), pitch=(40, 55), pitch_range=(40, 65)),
    Speaker("en-us+m7", rate=(145, 175), pitch=(40, 55), pitch_range=(45, 65)),
    Speaker("en-us+f3", rate=(155, 185), pitch=(45, 60), pitch_range=(45, 70)),
)
VOICE_SETS = ("default", "many")
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-rp")
# Variants that are not a human speaking voice (robots, whispering, effects) stay out of the "many" set.
_NOT_SPEECH = ("robo", "Robot", "whisper", "Demonic", "croak", "UniRobot")
HELD_OUT_VARIANTS = 0.15  # of the "many" set's variants, for test-unseen


def _many_voices(seed: int) -> tuple[tuple[Speaker, ...], tuple[Speaker, ...]]:
    """(training voices, held-out voices) of the "many" set: a pure function of the seed and the
    installed eSpeak NG voice variants."""
    variants = [v for v in espeak.list_variants() if not any(word in v for word in _NOT_SPEECH)]
    default_unseen = [s.name.split("+")[1] for s in UNSEEN_SPEAKERS]
    rng = random.Random(f"{seed}/many-voices")
    others = [v for v in variants if v not in default_unseen]
    rng.shuffle(others)
    held_out = set(default_unseen) | set(others[: max(0, round(HELD_OUT_VARIANTS * len(variants)) - 3)])
    train, unseen = [], []
    for variant in variants:
        for accent in rng.sample(ACCENTS, 2):
            rate, pitch, spread = rng.randint(135, 190), rng.randint(25, 70), rng.randint(30, 75)
            speaker = Speaker(f"{accent}+{variant}", rate=(rate - 15, rate + 15), pitch=(pitch - 8, pitch + 8),
                              pitch_range=(spread - 10, spread + 10))  # fmt: skip
            (unseen if variant in held_out else train).append(speaker)
    return tuple(train), tuple(unseen)


def voice_set(name: str, seed: int = 0) -> tuple[tuple[Speaker, ...], tuple[Speaker, ...]]:
    """(training voices, held-out voices) of the voice set ``name`` (see the module docstring)."""
    if name not in VOICE_SETS:
        raise ValueError(f"unknown voice set {name!r}; choose one of {VOICE_SETS}")
    return (TRAIN_SPEAKERS, UNSEEN_SPEAKERS) if name == "default" else _many_voices(seed)


@dataclasses.dataclass(frozen=True)
class Utterance:
    """Everything that determines one utterance's audio and record."""

    id: str
    split: str
    text: str
    kind: str
    speaker: str
    rate: int
    pitch: int
    pitch_range: int
    noise_seed: int


def split_sizes(size: int) -> dict[str, int]:
    """Utterances per split: 5% (at least 1) each for valid/test-seen/test-unseen, rest train."""
    if not isinstance(size, int) or size < 2 * len(SPLITS):
        raise ValueError(f"corpus size must be an integer >= {2 * len(SPLITS)}, got {size!r}")
    held_out = max(1, round(HELD_OUT_FRACTION * size))
    return {"train": size - 3 * held_out, "valid": held_out, "test-seen": held_out, "test-unseen": held_out}


def plan_corpus(size: int, seed: int, voices: str = "default") -> list[Utterance]:
    """The utterances of a corpus, in split order then id order; a pure function of (size, seed, voices)."""
    counts = split_sizes(size)
    texts = sentences.generate_sentences(size, seed)
    train_voices, unseen_voices = voice_set(voices, seed)
    plan, offset = [], 0
    for split in SPLITS:
        voices_of_split = list(unseen_voices if split == "test-unseen" else train_voices)
        # Cycling through a shuffled voice order balances speakers within every split.
        random.Random(f"{seed}/{split}/voices").shuffle(voices_of_split)
        for index in range(counts[split]):
            sentence = texts[offset + index]
            speaker = voices_of_split[index % len(voices_of_split)]
            uid = f"{split}-{index:06d}"
            rng = random.Random(f"{seed}/{uid}")
            plan.append(Utterance(
                id=uid, split=split, text=sentence.text, kind=sentence.kind, speaker=speaker.name,
                rate=rng.randint(*speaker.rate), pitch=rng.randint(*speaker.pitch),
                pitch_range=rng.randint(*speaker.pitch_range), noise_seed=rng.randrange(2**31),
            ))
        offset += counts[split]
    return plan


def _ms(seconds: float) -> float:
    return round(seconds, 3)


def synthesize_utterance(utterance: Utterance, out_dir: str) -> dict:
    """Synthesises ``utterance`` into ``out_dir/wavs/<id>.wav`` and returns its manifest record."""
    synthesis = espeak.synthesize(utterance.text, utterance.speaker, rate=utterance.rate, pitch=utterance.pitch,
                                  pitch_range=utterance.pitch_range, seed=utterance.noise_seed)
    phonemes = espeak.phonemize(utterance.text, utterance.speaker)
    relative = f"wavs/{utterance.id}.wav"
    with wave.open(os.path.join(out_dir, relative), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(synthesis.sample_rate)
        f.writeframes(synthesis.audio.astype("<i2").tobytes())
    return {
        "id": utterance.id,
        "audio": relative,
        "sample_rate": synthesis.sample_rate,
        "duration": _ms(synthesis.duration),
        "text": utterance.text,
        "phonemes": phonemes,
        "speaker": utterance.speaker,
        "kind": utterance.kind,
        "words": [{"word": w, "start": _ms(s), "end": _ms(e)} for w, s, e in synthesis.words],
        # A final pause shorter than half a millisecond vanishes in rounding.
        "phones": [{"phone": p, "start": _ms(s), "end": _ms(e)} for p, s, e in synthesis.phones if _ms(e) > _ms(s)],
    }


def _call_in_fork(function, *args):
    """``function(*args)`` run in a forked child (fresh copy of this process's eSpeak state)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            try:
                payload = pickle.dumps((True, function(*args)))
            except BaseException:  # noqa: BLE001 - reported to the parent, which raises
                payload = pickle.dumps((False, traceback.format_exc()))
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        raise RuntimeError(f"synthesis child exited without a result (wait status {status})")
    ok, value = pickle.loads(payload)
    if not ok:
        raise RuntimeError(f"synthesis failed in child process:\n{value}")
    return value


def _initialise_worker() -> None:
    espeak.sample_rate()  # initialise eSpeak once; every utterance then forks from this state


def _build_one(task: tuple[Utterance, str]) -> dict:
    return _call_in_fork(synthesize_utterance, *task)


def _prepare_directory(out_dir: str) -> None:
    """Creates ``out_dir``; clears a previous corpus there; refuses to mix with other files."""
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not os.path.isfile(os.path.join(out_dir, "corpus.json")):
            raise FileExistsError(f"{out_dir} exists, is not empty and holds no corpus.json: "
                                  f"refusing to build a corpus into it")
        shutil.rmtree(os.path.join(out_dir, "wavs"), ignore_errors=True)
        for name in ["corpus.json", *(f"{s}.jsonl" for s in SPLITS)]:
            if os.path.exists(os.path.join(out_dir, name)):
                os.remove(os.path.join(out_dir, name))
    os.makedirs(os.path.join(out_dir, "wavs"), exist_ok=True)


def build_corpus(out_dir: str | os.PathLike, *, size: int | None = None, seed: int = 0,
                 workers: int | None = None, voices: str = "default") -> dict:
    """Builds the embedded eSpeak corpus into ``out_dir`` and returns its summary.

    size: number of utterances (default ``DEFAULT_SIZE``, about one hour of audio; at least 8).
    seed: selects sentences, speaker assignment and prosody; the same seed gives byte-identical
    manifests and wav files. workers: synthesis processes (default: CPU count); results do
    not depend on it. voices: the voice set (``VOICE_SETS``). An ``out_dir`` holding a previous
    corpus is rebuilt; a non-empty directory without ``corpus.json`` is refused.

    Returns the dict also written to ``out_dir/corpus.json``: ``version``, ``seed``, ``size``,
    ``sample_rate``, ``speakers`` (voice -> prosody ranges), ``splits`` (split -> manifest,
    utterances, hours, speakers), ``hours`` and ``build_seconds``.
    """
    started = time.time()
    out_dir = os.fspath(out_dir)
    size = DEFAULT_SIZE if size is None else size
    workers = (os.cpu_count() or 1) if workers is None else workers
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if not hasattr(os, "fork"):
        raise RuntimeError("building the corpus needs os.fork (Linux or macOS)")
    plan = plan_corpus(size, seed, voices)
    train_voices, unseen_voices = voice_set(voices, seed)
    _prepare_directory(out_dir)
    # Fresh spawned workers: the calling process may already have used eSpeak (or run threads),
    # so forking from it would not give every utterance the same starting state.
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(plan)), initializer=_initialise_worker) as pool:
        records = pool.map(_build_one, [(u, out_dir) for u in plan], chunksize=8)
    records.sort(key=lambda r: r["id"])

    splits = {}
    for split in SPLITS:
        chosen = [r for r in records if r["id"].startswith(split + "-")]
        write_manifest(os.path.join(out_dir, f"{split}.jsonl"), chosen)
        splits[split] = {
            "manifest": f"{split}.jsonl",
            "utterances": len(chosen),
            "hours": round(sum(r["duration"] for r in chosen) / 3600, 4),
            "speakers": sorted({r["speaker"] for r in chosen}),
        }
    summary = {
        "version": VERSION,
        "seed": seed,
        "size": size,
        "sample_rate": records[0]["sample_rate"],
        "voices": voices,
        "speakers": {s.name: {"rate": list(s.rate), "pitch": list(s.pitch), "pitch_range": list(s.pitch_range),
                              "held_out": s in unseen_voices} for s in train_voices + unseen_voices},
        "splits": splits,
        "hours": round(sum(r["duration"] for r in records) / 3600, 4),
        "build_seconds": round(time.time() - started, 2),
    }
    with open(os.path.join(out_dir, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    log.info("built %d utterances (%.2f h) into %s in %.1f s", size, summary["hours"], out_dir,
             summary["build_seconds"])
    return summary
