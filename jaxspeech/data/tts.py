"""Text-to-speech examples: phrased phoneme tokens, speakers and terminal pitch contours.

A record becomes (see ``jaxspeech.models.tts`` for the batch contract):

- phonemes: the record's ``"phonemes"`` (the embedded corpus), else eSpeak NG's phonemization
  of its ``"text"`` (LJSpeech, LibriTTS, manifests), split by :func:`jaxspeech.text.phrasing.phrase`
  into symbols with break tokens between words and phrase boundaries;
- a speaker id from the run's speaker list;
- per phrase boundary: the token span of the word before it, and that word's log-F0 contour
  from the pitch processor (:func:`pitch_track`) minus the utterance's mean voiced log-F0
  (so the contour is relative to the speaker's register), resampled to C points.

The word's time span comes from the record's ``"words"`` timings. Records without them, or
whose timed words cannot be matched to the boundaries, train with no boundary contour
(``boundary_mask`` false, counted in ``skips`` under "no word timings for boundary contours").

Batch layout added to :func:`jaxspeech.data.pipeline.collate`'s (``N`` boundaries, ``C`` points)::

    speaker [B] int32, boundary_word_start [B,N] int32, boundary_word_end [B,N] int32,
    boundary_mask [B,N] bool, boundary_contour [B,N,C] float32,
    log_f0 [B,T] float32, voiced [B,T] bool (the pitch track per mel frame; zeros on padding)
"""

from __future__ import annotations

import functools
import string
import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from jaxspeech import audio
from jaxspeech.data.manifest import DEFAULT_SPEAKER
from jaxspeech.data.pipeline import SpeechDataset, collate
from jaxspeech.text.phrasing import BOUNDARY_KINDS, PhrasedText, phrase
from jaxspeech.text.tokenizer import Tokenizer

F0_RANGE_HZ = (60.0, 600.0)  # eSpeak's low male voices end statements near 60 Hz
_F0_CHUNK_SAMPLES = 11025  # waveforms are zero-padded to half seconds: few F0 compilations


@functools.lru_cache(maxsize=65536)
def _phrase_phonemes(phonemes: str) -> PhrasedText:
    return phrase(phonemes)


def record_phonemes(record: dict) -> str:
    """A record's IPA phonemes, or eSpeak NG's phonemization of its text if it has none."""
    if record.get("phonemes"):
        return record["phonemes"]
    from jaxspeech.data import espeak  # ctypes + the eSpeak library: only when needed

    return espeak.phonemize(record["text"])


def phrased_record(record: dict) -> PhrasedText:
    """The phrase structure of :func:`record_phonemes`."""
    return _phrase_phonemes(record_phonemes(record))


def speaker_of(record: dict) -> str:
    return record.get("speaker") or DEFAULT_SPEAKER


def boundary_token_spans(phrased: PhrasedText) -> np.ndarray:
    """[N,2] int32: (first token of the word before boundary n, token index of its punctuation)."""
    return np.asarray([(phrased.words[b.word][0], b.symbol) for b in phrased.boundaries], np.int32).reshape(-1, 2)


def boundary_times(record: dict, phrased: PhrasedText) -> np.ndarray | None:
    """[N,2] seconds (start, end) of the word before each phrase boundary, from the record's
    word timings; None when it has none or they do not match the boundaries.

    The n-th boundary is the n-th phrase-closing punctuation mark of the text; its word is the
    timed word group (eSpeak groups a function word with its neighbour) holding the text word
    that carries the mark.
    """
    words = record.get("words")
    if not words:
        return None
    text_words = [token for token in record["text"].split() if token.strip(string.punctuation)]
    marked = [k for k, token in enumerate(text_words) for ch in token if ch in BOUNDARY_KINDS]
    group_of = [g for g, word in enumerate(words) for _ in word["word"].split()]
    if len(marked) != len(phrased.boundaries) or len(group_of) != len(text_words):
        return None
    return np.asarray([(words[group_of[k]]["start"], words[group_of[k]]["end"]) for k in marked],
                      np.float64).reshape(-1, 2)


def pitch_track(waveform: np.ndarray, preset: audio.MelPreset) -> tuple[np.ndarray, np.ndarray]:
    """The pitch processor per mel frame: (log-F0 ``[T]``, continuous through unvoiced frames;
    voiced ``[T]`` bool, YIN voicing without octave outliers). waveform: ``[S]`` float at the
    preset's sample rate; F0 searched in :data:`F0_RANGE_HZ`."""
    frames = audio.num_frames(len(waveform), preset)
    padded = np.pad(waveform, (0, -len(waveform) % _F0_CHUNK_SAMPLES))
    f0, voiced = audio.estimate_f0(padded, preset, fmin=F0_RANGE_HZ[0], fmax=F0_RANGE_HZ[1])
    kept = np.asarray(audio.reject_octave_outliers(f0, voiced))[:frames]
    return np.asarray(audio.pitch_contour(f0, voiced))[:frames], kept


def relative_to_voiced_mean(log_f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """``log_f0 [T]`` minus its mean over the ``voiced [T]`` frames (unchanged if none is voiced):
    the contour relative to the speaker's register."""
    return log_f0 - (log_f0[voiced].mean() if voiced.any() else 0.0)


def word_contours(log_f0: np.ndarray, times: np.ndarray, frame_rate: float, points: int) -> np.ndarray:
    """Contours ``[N,points]`` of ``log_f0 [T]`` over each time span of ``times [N,2]`` (seconds),
    linearly resampled; a span shorter than one frame reads the frame it falls in."""
    last = len(log_f0) - 1
    out = np.zeros((len(times), points), np.float32)
    for n, (start, end) in enumerate(times):
        first = min(int(np.floor(start * frame_rate)), last)
        stop = min(max(int(np.ceil(end * frame_rate)), first + 1), last + 1)
        segment = log_f0[first:stop]
        out[n] = np.interp(np.linspace(0, len(segment) - 1, points), np.arange(len(segment)), segment)
    return out


def tokenizer_for(records: Sequence[dict]) -> Tokenizer:
    """A phoneme tokenizer over every symbol (breaks and punctuation included) of ``records``."""
    return Tokenizer.from_texts((phrased_record(r).text for r in records), "phonemes")


class RecordProsody(NamedTuple):
    """What :class:`TTSCollate` computes once per record: boundary token spans ``[N,2]``, their
    relative contours ``[N,C]`` (None without word timings), and the pitch track (log-F0 ``[T]``
    float32, voiced ``[T]`` bool, :func:`pitch_track`)."""

    spans: np.ndarray
    contours: np.ndarray | None
    log_f0: np.ndarray
    voiced: np.ndarray


class TTSCollate:
    """``collate(dataset, rows, frames, label_len)`` for :class:`~jaxspeech.data.pipeline.SpeechBatches`:
    the base batch plus speakers, boundary contours and the frame-level pitch track (computed
    once per record, thread-safe).

    speakers: name -> id; max_boundaries: N (utterances with more boundaries keep their last N);
    contour_points: C.
    """

    def __init__(self, speakers: dict[str, int], *, max_boundaries: int, contour_points: int):
        self.speakers, self.max_boundaries, self.contour_points = speakers, max_boundaries, contour_points
        # keyed by (dataset, record index): one collate may serve a training and a validation set
        self._cache: dict[tuple[int, int], RecordProsody] = {}
        self._lock = threading.Lock()

    def prosody(self, dataset: SpeechDataset, index: int) -> RecordProsody:
        """Boundary spans and contours (last N boundaries) and the pitch track of record ``index``."""
        key = (id(dataset), index)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        record = dataset.records[index]
        phrased = phrased_record(record)
        spans = boundary_token_spans(phrased)[-self.max_boundaries:]
        preset = dataset.preset
        log_f0, voiced = pitch_track(audio.load_audio(record["audio"], sample_rate=preset.sample_rate), preset)
        times = boundary_times(record, phrased)
        contours = None
        if times is None:
            dataset.skips.skip("no word timings for boundary contours", record.get("id", record["audio"]))
        elif len(spans):
            contours = word_contours(relative_to_voiced_mean(log_f0, voiced), times[-self.max_boundaries:],
                                     preset.sample_rate / preset.hop_length, self.contour_points)
        result = RecordProsody(spans, contours, log_f0.astype(np.float32), voiced)
        with self._lock:
            self._cache[key] = result
        return result

    def __call__(self, dataset: SpeechDataset, rows: np.ndarray, frames: int, label_len: int) -> dict[str, np.ndarray]:
        batch = collate(dataset, rows, frames, label_len)
        n, c = self.max_boundaries, self.contour_points
        frames = batch["mel"].shape[1]
        batch.update(
            speaker=np.zeros((len(rows),), np.int32),
            boundary_word_start=np.zeros((len(rows), n), np.int32),
            boundary_word_end=np.zeros((len(rows), n), np.int32),
            boundary_mask=np.zeros((len(rows), n), bool),
            boundary_contour=np.zeros((len(rows), n, c), np.float32),
            log_f0=np.zeros((len(rows), frames), np.float32),
            voiced=np.zeros((len(rows), frames), bool),
        )
        for r, index in enumerate(batch["index"]):
            if index < 0:
                continue
            record = dataset.records[index]
            batch["speaker"][r] = self.speakers[speaker_of(record)]
            prosody = self.prosody(dataset, int(index))
            length = min(frames, len(prosody.log_f0))
            batch["log_f0"][r, :length], batch["voiced"][r, :length] = prosody.log_f0[:length], prosody.voiced[:length]
            if prosody.contours is None:
                continue
            spans, k = prosody.spans, len(prosody.spans)
            batch["boundary_word_start"][r, :k], batch["boundary_word_end"][r, :k] = spans[:, 0], spans[:, 1]
            batch["boundary_mask"][r, :k] = True
            batch["boundary_contour"][r, :k] = prosody.contours
        return batch
