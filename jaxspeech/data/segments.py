"""Random fixed-length (waveform, log-mel) segments for vocoder training, on grain.

A vocoder learns from short windows cut at random offsets of each utterance (HiFi-GAN, Vocos):
:class:`SegmentBatches` draws them deterministically from a seed, so its state is one grain
iterator state and a checkpointed run resumes on exactly the batch it stopped at.

The examples are a stream of epochs; epoch ``e`` is a permutation of the records seeded by
``(seed, e)`` and global batch ``b`` holds stream positions ``[b B, (b+1) B)``, so any number
of records fills any batch size. Position ``i``'s offset is drawn from ``(seed, i)``. The log-mel
of a segment is computed from the segment's own samples (the preset's edge padding, as HiFi-GAN
does), so a preset whose frames tile the waveform ("tts_22k") gives exactly ``segment_frames``
frames for ``segment_frames * hop`` samples.

Batch layout (``B`` rows of this process; ``S = segment_frames * hop``)::

    audio [B,S] float32, audio_mask [B,S] bool, mel [B,T,F] float32, mel_mask [B,T] bool,
    index [B] int32 (record index, -1 for a row whose audio failed to decode)

Utterances shorter than a segment are zero-padded and masked.
"""

from __future__ import annotations

import functools

import grain
import jax
import numpy as np

from jaxspeech import audio
from jaxspeech.data.pipeline import GrainBatches, SpeechDataset


class SegmentBatches(GrainBatches):
    """Endless iterator of this process's share of random-segment batches, with grain checkpoint state.

    dataset: validated records (its ``lengths`` in frames and ``preset`` are used; features are not).
    batch_size: global rows per batch, divisible by ``process_count``.
    cache_audio: keep decoded waveforms in memory (the embedded corpus is small).
    """

    def __init__(self, dataset: SpeechDataset, *, segment_frames: int, batch_size: int, seed: int = 0,
                 process_index: int = 0, process_count: int = 1, num_threads: int = 2, prefetch: int = 4,
                 cache_audio: bool = True):
        preset = dataset.preset
        if segment_frames < 1 or batch_size < 1:
            raise ValueError(f"segment_frames and batch_size must be >= 1, got {segment_frames}, {batch_size}")
        if batch_size % process_count:
            raise ValueError(f"batch_size={batch_size} must divide over {process_count} processes")
        self.segment_samples = segment_frames * preset.hop_length
        if audio.num_frames(self.segment_samples, preset) != segment_frames:
            raise ValueError(
                f"preset padding {preset.padding!r} gives {audio.num_frames(self.segment_samples, preset)} frames "
                f"for {self.segment_samples} samples, not {segment_frames}: segments need frames that tile the "
                "waveform (half_overlap padding, as 'tts_22k')"
            )
        self.dataset, self.segment_frames, self.batch_size, self.seed = dataset, segment_frames, batch_size, seed
        self._process = (process_index, process_count)
        self._waveforms: dict[int, np.ndarray] | None = {} if cache_audio else None
        self._log_mel = jax.jit(lambda w: audio.log_mel(w, preset))
        self.permutation = functools.lru_cache(maxsize=2)(self._permutation)
        source = grain.MapDataset.range(1 << 32).map(self.batch)
        options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
        super().__init__(source.to_iter_dataset(options).__iter__())

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))

    def _waveform(self, index: int) -> np.ndarray | None:
        if self._waveforms is not None and index in self._waveforms:
            return self._waveforms[index]
        record = self.dataset.records[index]
        try:
            wave = audio.load_audio(record["audio"], sample_rate=self.dataset.preset.sample_rate)
        except audio.AudioError as e:
            self.dataset.skips.skip(str(e), record.get("id", record["audio"]))
            return None
        if self._waveforms is not None:
            self._waveforms[index] = wave
        return wave

    def rows(self, batch: int) -> list[tuple[int, int]]:
        """(record index, segment start sample) of every global row of ``batch``."""
        n = len(self.dataset)
        rows = []
        for position in range(batch * self.batch_size, (batch + 1) * self.batch_size):
            index = int(self.permutation(position // n)[position % n])
            samples = int(self.dataset.lengths[index]) * self.dataset.preset.hop_length
            latest_start = max(samples - self.segment_samples, 0)
            start = int(np.random.default_rng([self.seed, position]).integers(0, latest_start + 1))
            rows.append((index, start))
        return rows

    def batch(self, index: int) -> dict[str, np.ndarray]:
        """This process's share of global batch ``index`` (what the iterator yields at that step), loaded now."""
        p, count = self._process
        share = self.batch_size // count
        rows = self.rows(index)[p * share:(p + 1) * share]
        out = {
            "audio": np.zeros((share, self.segment_samples), np.float32),
            "audio_mask": np.zeros((share, self.segment_samples), bool),
            "index": np.full((share,), -1, np.int32),
        }
        for r, (index, start) in enumerate(rows):
            if (wave := self._waveform(index)) is None:
                continue
            segment = wave[start:start + self.segment_samples]
            out["audio"][r, :len(segment)], out["audio_mask"][r, :len(segment)] = segment, True
            out["index"][r] = index
        out["mel"] = np.asarray(self._log_mel(out["audio"]))
        valid_frames = audio.num_frames(out["audio_mask"].sum(axis=1), self.dataset.preset)
        out["mel_mask"] = np.arange(self.segment_frames)[None, :] < valid_frames[:, None]
        return out

