"""Text -> waveform with an acoustic model's parameters: eSpeak NG phonemes -> phrase breaks and
boundaries -> pieces of at most ``synth.max_symbols`` symbols cut at phrase boundaries -> one
batched :func:`generate` -> a vocoder -> the pieces concatenated.

Usable from a notebook with any params (no workdir needed): ``Synthesizer(config, tokenizer,
speakers, graphdef, vocoder)``; the TTS recipe builds one from a workdir.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from flax import nnx

from jaxspeech import audio
from jaxspeech.data.bucketing import round_up
from jaxspeech.data.tts import boundary_token_spans, record_phonemes, speaker_of
from jaxspeech.models.hashed_graph import hashed
from jaxspeech.models.tts.synthesis import Synthesis, frozen, generate
from jaxspeech.models.tts.vocoders import Vocoder, vocoder_reads_pitch
from jaxspeech.text import Tokenizer
from jaxspeech.text.phrasing import phrase, split_phonemes

TOKEN_MULTIPLE = 16  # token rows are padded to a multiple of this: few compiled shapes
MAX_STEPS = 1000
MAX_GUIDANCE = 20.0
SILENCE = math.log(1e-5)  # padding frames must vocode to silence, not to ln-amplitude 0


class SynthesisItem(NamedTuple):
    """One utterance to synthesize: phoneme pieces (each at most ``synth.max_symbols`` symbols),
    a speaker id and optional intonation tokens, one per phrase boundary of the whole text."""

    pieces: list[str]
    speaker: int
    intonation: Sequence[int] | None = None


class SynthesisRow(NamedTuple):
    """One piece as a model input: its item, token ids [L], boundary spans, chosen intonation."""

    owner: int
    tokens: np.ndarray
    spans: list[tuple[int, int]]
    intonation: list[int] | None


def check_options(*, guidance: float | None = None, steps: int | None = None, temperature: float | None = None,
                  **_) -> None:
    """Bounds on the synthesis settings a user can type (ValueError naming the setting)."""
    if steps is not None and not (isinstance(steps, int) and 1 <= steps <= MAX_STEPS):
        raise ValueError(f"steps must be an integer in [1, {MAX_STEPS}], got {steps!r}")
    if guidance is not None and not (math.isfinite(guidance) and 0 <= guidance <= MAX_GUIDANCE):
        raise ValueError(f"guidance scale must be in [0, {MAX_GUIDANCE}], got {guidance}")
    if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be > 0, got {temperature}")


class Synthesizer:
    """Text -> waveform with a trained model's parameters (passed per call, so training can use it).

    config: a run config (``model``, ``data.preset``, ``synth``); vocoder: see ``vocoders.py``.
    """

    def __init__(self, config: ml_collections.ConfigDict, tokenizer: Tokenizer, speakers: Sequence[str],
                 graphdef: nnx.GraphDef, vocoder: Vocoder):
        self.config, self.tokenizer, self.speakers, self.graphdef = config, tokenizer, list(speakers), graphdef
        self.vocoder = vocoder
        self.preset = audio.get_preset(config.data.preset)
        # generate()'s static jit arguments, hashed and frozen once rather than on every call
        self._static_graphdef, self._model_config = hashed(graphdef), frozen(config.model)

    def speaker_id(self, speaker: str | int | None) -> int:
        """A speaker name or index (None = the first speaker) -> index; unknown ones raise naming the known."""
        if speaker is None:
            return 0
        if isinstance(speaker, str) and speaker in self.speakers:
            return self.speakers.index(speaker)
        if isinstance(speaker, int) or (isinstance(speaker, str) and speaker.isdigit()):
            if 0 <= int(speaker) < len(self.speakers):
                return int(speaker)
        raise ValueError(f"unknown speaker {speaker!r}; choose a name or index of: "
                         + ", ".join(f"{i}={s}" for i, s in enumerate(self.speakers)))

    def item(self, text: str, speaker: str | int | None = None,
             intonation: Sequence[int] | None = None) -> SynthesisItem:
        """A :class:`SynthesisItem` for ``text``: eSpeak phonemes, cut at phrase boundaries."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("empty text: nothing to synthesize")
        phonemes = record_phonemes({"text": text})
        if not phonemes.strip():
            raise ValueError(f"no speakable words in {text!r}")
        return SynthesisItem(split_phonemes(phonemes, self.config.synth.max_symbols), self.speaker_id(speaker),
                             intonation)

    def record_item(self, record: dict) -> SynthesisItem:
        """A corpus record's phonemes and speaker as a :class:`SynthesisItem` (unknown speakers raise)."""
        return SynthesisItem(split_phonemes(record_phonemes(record), self.config.synth.max_symbols),
                             self.speaker_id(speaker_of(record)))

    def rows(self, items: Sequence[SynthesisItem]) -> list[SynthesisRow]:
        """Every piece of every item as a :class:`SynthesisRow`. Raises UnknownSymbolError for
        symbols outside the vocabulary, ValueError for a wrong number of intonation tokens."""
        rows = []
        for owner, item in enumerate(items):
            phrased = [phrase(piece) for piece in item.pieces]
            total = sum(len(p.boundaries) for p in phrased)
            choices = item.intonation
            if choices is not None and len(choices) == 1:
                choices = list(choices) * total
            if choices is not None and len(choices) != total:
                raise ValueError(f"{len(choices)} intonation tokens given for {total} phrase boundaries")
            used = 0
            for p in phrased:
                spans = boundary_token_spans(p)
                chosen = None if choices is None else list(choices[used:used + len(spans)])
                used += len(spans)
                rows.append(SynthesisRow(owner, self.tokenizer.encode(p.text), spans, chosen))
        return rows

    def generate(self, params, items: Sequence[SynthesisItem], *, key: jax.Array, guidance: float | None = None,
                 length_scale: float = 1.0, pitch: bool | None = None,
                 **sampler) -> tuple[list[SynthesisRow], Synthesis]:
        """The acoustic model's output for every piece of ``items``, in one batch: (rows, a
        :class:`Synthesis` with numpy arrays whose mel is silence past mel_mask).

        guidance (CFG scale; 0 or None = off) and the sampler options (flow matching: steps,
        temperature, method, sway) default to ``config.synth``. pitch: whether to predict the frame
        F0 and voicing; None: when this synthesizer's vocoder reads them.
        """
        s = self.config.synth
        guidance = s.guidance if guidance is None else guidance
        sampler = {**s.sampler.to_dict(), **sampler}
        check_options(guidance=guidance, **sampler)
        rows = self.rows(items)
        if any(row.intonation is not None for row in rows) and any(row.intonation is None for row in rows):
            raise ValueError("give intonation tokens for every item of a batch or for none")
        length = int(round_up(max(len(row.tokens) for row in rows), TOKEN_MULTIPLE))
        boundaries = max(1, max(len(row.spans) for row in rows))
        n = len(rows)
        tokens, token_mask = np.zeros((n, length), np.int32), np.zeros((n, length), bool)
        starts, ends = np.zeros((n, boundaries), np.int32), np.zeros((n, boundaries), np.int32)
        present, chosen = np.zeros((n, boundaries), bool), np.zeros((n, boundaries), np.int32)
        for r, row in enumerate(rows):
            tokens[r, :len(row.tokens)], token_mask[r, :len(row.tokens)] = row.tokens, True
            for k, (start, end) in enumerate(row.spans):
                starts[r, k], ends[r, k], present[r, k] = start, end, True
                chosen[r, k] = row.intonation[k] if row.intonation is not None else 0
        speaker = np.asarray([items[row.owner].speaker for row in rows], np.int32)
        overridden = rows[0].intonation is not None
        out = generate(self._static_graphdef, params, self._model_config, tokens, token_mask, speaker, key,
                       guidance_scale=guidance or None, length_scale=length_scale,
                       duration_rounding=s.duration_rounding, intonation=chosen if overridden else None,
                       boundary_word_start=starts, boundary_word_end=ends, boundary_mask=present,
                       pitch=vocoder_reads_pitch(self.vocoder) if pitch is None else pitch, **sampler)
        mel_mask = np.asarray(out.mel_mask)
        mel = np.where(mel_mask[..., None], np.asarray(out.mel), SILENCE)
        pitch = [None if x is None else np.asarray(x) for x in (out.f0, out.voiced)]
        return rows, Synthesis(mel, mel_mask, *pitch)

    def join(self, rows: Sequence[SynthesisRow], out: Synthesis, waveforms: np.ndarray,
             count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(log-mel [T,F], waveform [S]) of each of ``count`` items: its pieces' valid frames and
        samples concatenated in order."""
        hop = self.preset.hop_length
        pieces: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(count)]
        for r, row in enumerate(rows):
            frames = int(out.mel_mask[r].sum())
            pieces[row.owner].append((out.mel[r, :frames], waveforms[r, :frames * hop]))
        return [(np.concatenate([m for m, _ in p]), np.concatenate([w for _, w in p])) for p in pieces]

    def synthesize(self, params, items: Sequence[SynthesisItem], *, key: jax.Array, vocoder: Vocoder | None = None,
                   **options) -> list[tuple[np.ndarray, np.ndarray]]:
        """(log-mel [T,F], waveform [S]) of each item, its pieces synthesized in one batch and
        concatenated. options: see :meth:`generate`; vocoder: default this synthesizer's."""
        vocoder = vocoder or self.vocoder
        rows, out = self.generate(params, items, key=key, pitch=vocoder_reads_pitch(vocoder), **options)
        waveforms = np.asarray(vocoder(out, jax.random.fold_in(key, 1)))
        return self.join(rows, out, waveforms, len(items))
