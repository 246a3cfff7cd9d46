"""Speech batches on grain: records -> decoded audio -> log-mel -> length-bucketed, padded batches.

A :class:`SpeechDataset` holds the records that survived validation, their frame lengths and
labels, and decodes + featurises an example on demand (cached in memory when asked). A
:class:`SpeechBatches` iterator turns a deterministic epoch plan (see ``bucketing``) into a
grain ``MapDataset`` of batches read by background threads; its state is one grain iterator
state, so a checkpointed run resumes on exactly the batch it stopped at.

Batch layout (``B`` rows of this process, ``T``/``L`` fixed per bucket)::

    mel [B,T,F] float32, mel_mask [B,T] bool, tokens [B,L] int32, token_mask [B,L] bool,
    index [B] int32 (record index, -1 for filler rows)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import grain
import jax
import numpy as np
import soundfile

from jaxspeech import audio
from jaxspeech.data import bucketing
from jaxspeech.data.manifest import SkipCounter
from jaxspeech.data.packing import PackedPlanner, PackingSpec, plan_packing

Labeler = Callable[[dict], np.ndarray]
Collate = Callable[["SpeechDataset", np.ndarray, int, int], dict[str, np.ndarray]]
_FEATURE_CHUNK_HOPS = 64  # waveforms are zero-padded to a multiple of 64 hops: few jit shapes


def _resampled_samples(path: str, sample_rate: int) -> int:
    """Samples of ``path`` after resampling to ``sample_rate``, from its header (checks it is readable)."""
    info = soundfile.info(path)
    if info.frames == 0:
        raise ValueError("audio file has no samples")
    return info.frames if info.samplerate == sample_rate else round(info.frames * sample_rate / info.samplerate)


class SpeechDataset:
    """Validated records with frame lengths ``[N]`` and labels; examples decoded on demand.

    Records with missing or unreadable audio, empty or unencodable text are skipped, counted in
    ``skips`` and logged, never silently dropped. Audio that fails to decode later is
    counted at that point and its row is masked out.
    """

    def __init__(self, records: Sequence[dict], *, preset: str, labeler: Labeler | None,
                 skips: SkipCounter | None = None, cache: bool = True, max_seconds: float | None = None):
        self.preset = audio.get_preset(preset)
        self.skips = skips if skips is not None else SkipCounter()
        self.records, self.labels, lengths = [], [], []
        for record in records:
            where = record.get("id", record.get("audio", "?"))
            try:
                samples = _resampled_samples(record["audio"], self.preset.sample_rate)
                label = labeler(record) if labeler else np.zeros((0,), np.int32)
            except (RuntimeError, ValueError, OSError) as e:  # soundfile, tokenizer and text errors
                self.skips.skip(f"{type(e).__name__}: {e}", where)
                continue
            if labeler and label.size == 0:
                self.skips.skip("empty transcript", where)
                continue
            if max_seconds and samples > max_seconds * self.preset.sample_rate:
                self.skips.skip(f"longer than {max_seconds} s", where)
                continue
            self.records.append(record)
            self.labels.append(label)
            lengths.append(audio.num_frames(samples, self.preset))
        if not self.records:
            raise ValueError(f"no usable records ({self.skips.summary()})")
        self.lengths = np.asarray(lengths, np.int32)
        # Keyed by audio file: records that share one (UniVoice's ASR and TTS rows) decode it once.
        self._cache: dict[str, np.ndarray] | None = {} if cache else None
        self._log_mel = jax.jit(lambda w: audio.log_mel(w, self.preset))

    def __len__(self) -> int:
        return len(self.records)

    def keep(self, predicate: Callable[[int, np.ndarray], bool], reason: str) -> None:
        """Drops, counts and logs records for which ``predicate(frames, label)`` is false."""
        kept = [i for i in range(len(self)) if predicate(int(self.lengths[i]), self.labels[i])]
        for i in sorted(set(range(len(self))) - set(kept)):
            self.skips.skip(reason, self.records[i].get("id", self.records[i]["audio"]))
        self.records = [self.records[i] for i in kept]
        self.labels = [self.labels[i] for i in kept]
        self.lengths = self.lengths[kept]

    def mel_statistics(self) -> tuple[float, float]:
        """Mean and standard deviation of every log-mel value of the dataset (Matcha's data statistics)."""
        total, total_sq, count = 0.0, 0.0, 0
        for i in range(len(self)):
            mel = self.features(i)
            if mel is not None:
                total, total_sq = total + float(mel.sum()), total_sq + float(np.square(mel).sum())
                count += mel.size
        if not count:
            raise ValueError(f"no audio could be decoded ({self.skips.summary()})")
        mean = total / count
        return mean, math.sqrt(max(total_sq / count - mean * mean, 1e-12))

    def features(self, index: int) -> np.ndarray | None:
        """Log-mel ``[T,F]`` of example ``index``, or None (counted) if its audio cannot be decoded."""
        record = self.records[index]
        if self._cache is not None and record["audio"] in self._cache:
            return self._cache[record["audio"]]
        try:
            wave = audio.load_audio(record["audio"], sample_rate=self.preset.sample_rate)
        except audio.AudioError as e:
            self.skips.skip(str(e), record.get("id", record["audio"]))
            return None
        chunk = _FEATURE_CHUNK_HOPS * self.preset.hop_length
        padded = np.pad(wave, (0, -len(wave) % chunk))
        mel = np.asarray(self._log_mel(padded))[: audio.num_frames(len(wave), self.preset)]
        if self._cache is not None:
            self._cache[record["audio"]] = mel
        return mel


def collate(dataset: SpeechDataset, rows: np.ndarray, frames: int, label_len: int) -> dict[str, np.ndarray]:
    """Pads the examples ``rows`` (``-1`` = filler) into one batch dict of fixed shape."""
    n_mels = dataset.preset.n_mels
    batch = {
        "mel": np.zeros((len(rows), frames, n_mels), np.float32),
        "mel_mask": np.zeros((len(rows), frames), bool),
        "tokens": np.zeros((len(rows), label_len), np.int32),
        "token_mask": np.zeros((len(rows), label_len), bool),
        "index": np.full((len(rows),), -1, np.int32),
    }
    for r, i in enumerate(rows):
        if i < 0 or (mel := dataset.features(int(i))) is None:
            continue
        t, label = min(len(mel), frames), dataset.labels[i][:label_len]
        batch["mel"][r, :t], batch["mel_mask"][r, :t] = mel[:t], True
        batch["tokens"][r, : len(label)], batch["token_mask"][r, : len(label)] = label, True
        batch["index"][r] = i
    return batch


class GrainBatches(grain.DatasetIterator):
    """A batch source as a grain ``DatasetIterator`` over the grain iterator ``parent`` that
    loads the batches: ``next`` gives this process's batch; ``get_state``/``set_state`` (and so
    grain's orbax checkpoint handler) save and restore the position."""

    def __init__(self, parent: grain.DatasetIterator):
        super().__init__(parent)  # grain keeps it as ``self._parent``

    def __next__(self) -> dict[str, np.ndarray]:
        return next(self._parent)

    def get_state(self) -> dict:
        return self._parent.get_state()

    def set_state(self, state: dict) -> None:
        self._parent.set_state(state)

    def close(self) -> None:
        if hasattr(self, "_closed"):  # a constructor that rejected its arguments never reached grain's
            super().close()


class SpeechBatches(GrainBatches):
    """Iterator of this process's share of bucketed batches, a grain iterator (checkpointable position).

    Global batch ``b`` is the same whatever the number of processes; process ``p`` of ``P``
    yields rows ``[p B/P, (p+1) B/P)`` of it. ``shuffle=False`` gives one pass in length
    order (evaluation); otherwise epochs repeat, each with its own permutation. ``collate``
    builds one batch from ``(dataset, rows, frames, label_len)``; models with more inputs
    than :func:`collate`'s extend it (``jaxspeech.data.tts.TTSCollate``).
    """

    def __init__(self, dataset: SpeechDataset, buckets: bucketing.Buckets, *, seed: int = 0, shuffle: bool = True,
                 process_index: int = 0, process_count: int = 1, num_threads: int = 2, prefetch: int = 4,
                 label_multiple: int = 16, collate: Collate = collate, packing: PackingSpec | None = None):
        if any(size % process_count for size in buckets.sizes):
            raise ValueError(f"bucket rows {buckets.sizes} must divide over {process_count} processes")
        if packing is not None and process_count > 1:
            raise ValueError("packing plans whole batches, so that every process's packed rows agree it would "
                             "need one plan per process: packing is single-process for now")
        self.dataset, self.buckets, self.seed, self.shuffle = dataset, buckets, seed, shuffle
        self._collate = collate
        self._process = (process_index, process_count)
        self.bucket_ids = buckets.assign(dataset.lengths)
        label_lens = np.asarray([len(label) for label in dataset.labels])
        self.label_lengths = [
            max(label_multiple, int(bucketing.round_up(label_lens[self.bucket_ids == k].max(initial=1), label_multiple)))
            for k in range(len(buckets.sizes))
        ]
        self.packing, self.planner = packing, None
        self.batches_per_epoch = bucketing.batches_per_epoch(self.bucket_ids, buckets)
        if packing is not None:
            self.row_lengths = tuple(packing.row_length(frames, label_len)
                                     for frames, label_len in zip(buckets.lengths, self.label_lengths))  # fmt: skip
            self.planner = PackedPlanner(packing.item_tokens, self.bucket_ids, buckets, self.row_lengths,
                                         fill=packing.fill, length_factor=packing.length_factor,
                                         row_multiple=packing.row_multiple)  # fmt: skip
            self.batches_per_epoch = self.planner.batches_per_epoch
        # Loader threads straddle epoch boundaries: keep two plans, computed once each.
        self.plan = functools.lru_cache(maxsize=2)(self._plan)
        source = grain.MapDataset.range(self.batches_per_epoch)
        if shuffle:  # epochs without end; a batch's global index gives its epoch and place in the plan
            source = source.repeat()
        source = source.map_with_index(lambda step, _: self._load_batch(step))
        options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
        super().__init__(source.to_iter_dataset(options).__iter__())

    def _plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        """The global batches of ``epoch`` as ``(bucket, record indices)``."""
        if self.planner is not None:
            return self.planner.plan(seed=self.seed, epoch=epoch, shuffle=self.shuffle)
        return bucketing.plan_epoch(self.bucket_ids, self.buckets, seed=self.seed, epoch=epoch, shuffle=self.shuffle)

    def _load_batch(self, step: int) -> dict[str, np.ndarray]:
        bucket, rows = self.plan(step // self.batches_per_epoch)[step % self.batches_per_epoch]
        p, count = self._process
        share = len(rows) // count
        batch = self._collate(self.dataset, rows[p * share:(p + 1) * share], self.buckets.lengths[bucket],
                              self.label_lengths[bucket])
        if self.planner is not None:
            batch.update(plan_packing(self.packing.batch_tokens(batch), self.planner.lengths[bucket],
                                      min_rows=self.planner.rows[bucket], row_multiple=self.packing.row_multiple))
        return batch

    def describe(self) -> dict:
        """Utterances, buckets ``[lengths, rows]``, batches per epoch and :meth:`padding_report`: what a
        run records about its batching."""
        buckets = [list(self.buckets.lengths), list(self.buckets.sizes)]
        return {"train_utterances": len(self.dataset), "buckets": buckets, "batches_per_epoch": self.batches_per_epoch,
                **self.padding_report()}

    def padding_report(self, *, random_batch_size: int | None = None) -> dict[str, float]:
        """Padding share of bucketed batching vs shuffled fixed-size batching (same mean rows/batch), and
        with packing the share of padded tokens with bucketing alone (each row its own sequence of the
        packed rows' length) and with packing, the packed rows per batch and the batches that grew."""
        plan = self.plan(0)
        rows = random_batch_size or max(1, round(len(self.dataset) / len(plan)))
        packed = {}
        if self.planner is not None:
            bucketed = bucketing.plan_epoch(self.bucket_ids, self.buckets, seed=self.seed, epoch=0)
            tokens = sum(int(self.planner.item_tokens[r[r >= 0]].sum()) for _, r in bucketed)
            slots = sum(len(r) * self.row_lengths[k] for k, r in bucketed)
            packed = {"token_padding_bucketed": 1.0 - tokens / slots,
                      "token_padding_packed": self.planner.padding(plan),
                      "packed_rows": list(self.planner.rows), "packed_lengths": list(self.planner.lengths),
                      "grown_batches": self.planner.grown(plan)}  # fmt: skip
        return {
            "padding_bucketed": bucketing.padding_fraction(plan, self.dataset.lengths, self.buckets),
            "padding_random": bucketing.random_batching_padding_fraction(self.dataset.lengths, batch_size=rows,
                                                                          seed=self.seed),
            "random_batch_size": rows,
            **packed,
        }
