"""Flow-matching text-to-speech (``jaxspeech.models.tts``): train, evaluate, synthesize from a workdir.

A workdir holds ``config.json`` (resolved config, with the vocabulary size, speaker count and
mel statistics measured on the training split), ``vocab.json`` (phoneme tokenizer with the
break symbol), ``speakers.json``, ``checkpoints/`` (orbax), ``metrics.jsonl`` + TensorBoard
events (a synthesized validation mel, its alignment-free audio and the loss terms),
``data_stats.json``, ``eval_<split>.json`` and ``eval_<split>/<id>.wav``.

Synthesis: text -> eSpeak NG phonemes -> phrase breaks and boundaries -> pieces of at most
``synth.max_symbols`` symbols cut at phrase boundaries -> one batched ``tts.generate`` ->
vocoder (Griffin-Lim; harmonic-plus-noise from the model's predicted F0, for models with a pitch
predictor; or a trained iSTFT vocoder workdir) -> the pieces concatenated.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
import optax

from jaxspeech import audio
from jaxspeech.audio.harmonic import log_mel_f0_to_audio
from jaxspeech.data.bucketing import make_buckets, round_up
from jaxspeech.data.manifest import SkipCounter
from jaxspeech.data.pipeline import SpeechBatches, SpeechDataset
from jaxspeech.data.readers import load_records
from jaxspeech.data.tts import (
    TTSCollate,
    boundary_token_spans,
    phrased_record,
    pitch_track,
    record_phonemes,
    speaker_of,
    tokenizer_for,
)
from jaxspeech.eval import error_rates
from jaxspeech.eval.mcd import mel_cepstral_distortion
from jaxspeech.eval.prosody import comma_pause_mae, expected_direction, terminal_direction
from jaxspeech.eval.rtf import time_call
from jaxspeech.models import tts
from jaxspeech.text import Tokenizer
from jaxspeech.text.phrasing import BREAK, phrase, split_phonemes
from jaxspeech.train.checkpoint import restore_latest
from jaxspeech.train.config import read_saved_config, save_config
from jaxspeech.train.loop import train_in_workdir
from jaxspeech.train.mesh import make_mesh
from jaxspeech.train.metrics import MetricWriter, plot_mel, write_data_stats
from jaxspeech.train.optim import adamw_warmup_cosine
from jaxspeech.train.state import create_train_state
from jaxspeech.train.step import compile_recipe_step

log = logging.getLogger(__name__)
_VOCAB, _SPEAKERS = "vocab.json", "speakers.json"
_TOKEN_MULTIPLE = 16  # synthesis pads token rows to a multiple of this: few compiled shapes
GRIFFIN_LIM = "griffin-lim"
HARMONIC = "harmonic"  # jaxspeech.audio.harmonic, driven by the pitch predictor's F0
BUILTIN_VOCODERS = (GRIFFIN_LIM, HARMONIC)
MAX_STEPS = 1000
MAX_GUIDANCE = 20.0


def _optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    return adamw_warmup_cosine(config.optim, config.train.steps)


def _state_template(config, key, optimizer):
    graphdef, params = tts.init(config.model, key)
    return graphdef, create_train_state(params, optimizer, jax.random.key(config.seed))


def _vocabulary(records, workdir) -> tuple[Tokenizer, list[str]]:
    """The phoneme tokenizer and speaker names of a run: built from the training records, or
    read back when resuming (they must not change under a checkpoint)."""
    vocab_path, speakers_path = os.path.join(workdir, _VOCAB), os.path.join(workdir, _SPEAKERS)
    if os.path.exists(vocab_path) and os.path.exists(speakers_path):
        with open(speakers_path, encoding="utf-8") as f:
            return Tokenizer.load(vocab_path), json.load(f)
    tokenizer = tokenizer_for(records)
    if BREAK not in tokenizer.symbols:
        raise ValueError("the training phonemes have no word boundary: cannot learn phrase breaks")
    speakers = sorted({speaker_of(r) for r in records})
    tokenizer.save(vocab_path)
    with open(speakers_path, "w", encoding="utf-8") as f:
        json.dump(speakers, f, ensure_ascii=False, indent=1)
    return tokenizer, speakers


def _labeler(tokenizer: Tokenizer):
    return lambda record: tokenizer.encode(phrased_record(record).text)


def _mel_statistics(dataset: SpeechDataset) -> tuple[float, float]:
    """Mean and standard deviation of every log-mel value of ``dataset`` (Matcha's data statistics)."""
    total, total_sq, count = 0.0, 0.0, 0
    for i in range(len(dataset)):
        mel = dataset.features(i)
        if mel is not None:
            total, total_sq, count = total + float(mel.sum()), total_sq + float(np.square(mel).sum()), count + mel.size
    if not count:
        raise ValueError(f"no training audio could be decoded ({dataset.skips.summary()})")
    mean = total / count
    return mean, math.sqrt(max(total_sq / count - mean * mean, 1e-12))


def _collate(config, speakers: Sequence[str]) -> TTSCollate:
    return TTSCollate({name: i for i, name in enumerate(speakers)}, max_boundaries=config.data.max_boundaries,
                      contour_points=config.model.intonation.contour_points)


def train(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Trains (or resumes) a flow-matching TTS model in ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    skips = SkipCounter()
    records = load_records(config.data.dir, split=config.data.train_split, skips=skips)
    tokenizer, speakers = _vocabulary(records, workdir)
    d = config.data
    dataset = SpeechDataset(records, preset=d.preset, labeler=_labeler(tokenizer), skips=skips,
                            cache=d.cache_features, max_seconds=d.max_seconds)
    # MAS gives every token at least one frame.
    dataset.keep(lambda frames, label: len(label) <= frames, "more phoneme tokens than mel frames")
    m = config.model
    m.vocab_size, m.num_speakers, m.break_token = tokenizer.vocab_size, len(speakers), tokenizer.symbols.index(BREAK)
    m.mel_mean, m.mel_std = _mel_statistics(dataset)
    save_config(config, workdir)

    mesh = make_mesh({"data": config.mesh.data, "fsdp": config.mesh.fsdp})
    buckets = make_buckets(dataset.lengths, max_frames=d.max_frames, num_buckets=d.num_buckets,
                           row_multiple=mesh.size * config.train.accum_steps)
    collate = _collate(config, speakers)
    batches = SpeechBatches(dataset, buckets, seed=config.seed, process_index=jax.process_index(),
                            process_count=jax.process_count(), num_threads=d.num_threads, collate=collate)
    write_data_stats(workdir, {**batches.describe(), "speakers": len(speakers), "vocab_size": tokenizer.vocab_size,
                               "mel_mean": m.mel_mean, "mel_std": m.mel_std, "skips": dict(skips.counts)})

    optimizer = _optimizer(config)
    graphdef, state = _state_template(config, jax.random.key(config.seed), optimizer)
    loss_fn = tts.make_loss_fn(graphdef, m)
    step_fn, state = compile_recipe_step(loss_fn, optimizer, state, mesh, config)

    # Fixed validation batches (deterministic loss with a fixed key) and one sentence to synthesize.
    valid = SpeechDataset(load_records(d.dir, split=d.eval_split), preset=d.preset, labeler=_labeler(tokenizer),
                          skips=SkipCounter(), cache=True)
    valid_buckets = make_buckets(valid.lengths, max_frames=d.max_frames, num_buckets=1)
    valid_loader = SpeechBatches(valid, valid_buckets, shuffle=False, num_threads=d.num_threads, collate=collate)
    valid_batches = [next(valid_loader) for _ in range(min(config.train.eval_batches, valid_loader.batches_per_epoch))]
    eval_loss = jax.jit(tts.make_loss_fn(graphdef, m, train=False))
    writer = MetricWriter(workdir)
    synthesizer = Synthesizer(config, tokenizer, speakers, graphdef,
                              config.synth.vocoder if config.synth.vocoder in BUILTIN_VOCODERS else GRIFFIN_LIM)
    sample = valid.records[0]
    reference_f0 = _hz(*pitch_track(audio.load_audio(sample["audio"], sample_rate=synthesizer.preset.sample_rate),
                                    synthesizer.preset))

    def evaluate_valid(state) -> dict[str, float]:
        key = jax.random.key(config.seed)
        metrics = [jax.device_get(eval_loss(state.params, batch, key)[1]) for batch in valid_batches]
        [(mel, waveform)] = synthesizer.synthesize(state.params, [synthesizer.record_item(sample)], key=key)
        f0 = {"synthesized": _hz(*pitch_track(waveform, synthesizer.preset)), "recording": reference_f0}
        writer.image(int(state.step), "valid/synthesized_mel", plot_mel(mel, title=sample["text"], f0=f0))
        writer.audio(int(state.step), "valid/synthesized", waveform, synthesizer.preset.sample_rate)
        return {name: float(np.mean([x[name] for x in metrics])) for name in metrics[0]}

    train_in_workdir(config, workdir, state=state, step_fn=step_fn, batches=batches, mesh=mesh, writer=writer,
                     eval_fn=evaluate_valid, skips=skips)


def _hz(log_f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """A pitch track as Hz on voiced frames, 0 elsewhere (for plots)."""
    return np.where(voiced, np.exp(log_f0), 0.0)


class SynthesisItem:
    """One utterance to synthesize: phoneme pieces (each at most ``synth.max_symbols`` symbols),
    a speaker id and optional intonation tokens, one per phrase boundary of the whole text."""

    def __init__(self, pieces: Sequence[str], speaker: int, intonation: Sequence[int] | None = None):
        self.pieces, self.speaker, self.intonation = list(pieces), speaker, intonation


class Synthesizer:
    """Text -> waveform with a trained model's parameters (passed per call, so training can use it).

    vocoder: ``"griffin-lim"``, ``"harmonic"`` (harmonic-plus-noise at the pitch predictor's F0;
    needs ``model.pitch.enabled``) or the workdir of a trained iSTFT vocoder (same mel preset).
    """

    def __init__(self, config, tokenizer: Tokenizer, speakers: Sequence[str], graphdef, vocoder: str):
        self.config, self.tokenizer, self.speakers, self.graphdef = config, tokenizer, list(speakers), graphdef
        self.preset = audio.get_preset(config.data.preset)
        preset = config.data.preset
        if vocoder == GRIFFIN_LIM:
            n_iter = config.synth.griffin_lim_iterations
            self._vocode = lambda out, key: audio.log_mel_to_audio(out.mel, preset, n_iter=n_iter)
        elif vocoder == HARMONIC:
            pitch = config.model.get("pitch")
            if pitch is None or not pitch.enabled:
                raise ValueError("the harmonic vocoder needs the model's F0: train with model.pitch.enabled=True, "
                                 f"or use --vocoder {GRIFFIN_LIM}")
            noise = config.synth.get("harmonic_voiced_noise", 0.1)
            refine = dict(griffin_lim_iterations=config.synth.get("harmonic_griffin_lim_iterations", 0),
                          harmonic_below_hz=config.synth.get("harmonic_below_hz", 0.0),
                          refine_unvoiced=config.synth.get("harmonic_refine_unvoiced", False))
            self._vocode = lambda out, key: log_mel_f0_to_audio(out.mel, out.f0, out.voiced, key, preset,
                                                                voiced_noise=noise, **refine)
        else:
            from jaxspeech.train.recipes import vocoder as vocoder_recipe

            vocoder_config = read_saved_config(vocoder)
            if vocoder_config.model.preset != config.data.preset:
                raise ValueError(f"vocoder {vocoder} works on {vocoder_config.model.preset!r} mels, the TTS model "
                                 f"on {config.data.preset!r}")
            trained = vocoder_recipe.vocode(vocoder)
            self._vocode = lambda out, key: trained(out.mel, out.mel_mask)

    @classmethod
    def from_workdir(cls, workdir: str, vocoder: str | None = None):
        """(synthesizer, params, step) of the latest readable checkpoint of ``workdir``."""
        config = read_saved_config(workdir)
        graphdef, template = _state_template(config, jax.random.key(0), _optimizer(config))
        state = restore_latest(workdir, template)
        with open(os.path.join(workdir, _SPEAKERS), encoding="utf-8") as f:
            speakers = json.load(f)
        tokenizer = Tokenizer.load(os.path.join(workdir, _VOCAB))
        synthesizer = cls(config, tokenizer, speakers, graphdef, vocoder or config.synth.vocoder)
        return synthesizer, state.params, int(state.step)

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

    def item(self, text: str, speaker: str | int | None = None, intonation: Sequence[int] | None = None):
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

    def rows(self, items: Sequence[SynthesisItem]):
        """Token rows of every piece of every item: (owner item, tokens [L], boundary spans, intonation).
        Raises UnknownSymbolError for symbols outside the vocabulary, ValueError for a wrong
        number of intonation tokens."""
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
                rows.append((owner, self.tokenizer.encode(p.text), spans, chosen))
        return rows

    def synthesize(self, params, items: Sequence[SynthesisItem], *, key: jax.Array, steps: int | None = None,
                   guidance: float | None = None, temperature: float | None = None, length_scale: float = 1.0,
                   method: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """(log-mel [T,F], waveform [S]) of each item, its pieces synthesized in one batch and concatenated.

        steps, guidance (CFG scale; 0 or None = off), temperature, method: default from ``config.synth``.
        """
        s = self.config.synth
        steps = s.steps if steps is None else steps
        guidance = s.guidance if guidance is None else guidance
        temperature = s.temperature if temperature is None else temperature
        if not (isinstance(steps, int) and 1 <= steps <= MAX_STEPS):
            raise ValueError(f"steps must be an integer in [1, {MAX_STEPS}], got {steps!r}")
        if guidance is not None and not (math.isfinite(guidance) and 0 <= guidance <= MAX_GUIDANCE):
            raise ValueError(f"guidance scale must be in [0, {MAX_GUIDANCE}], got {guidance}")
        if not (math.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        rows = self.rows(items)
        length = round_up(max(len(tokens) for _, tokens, _, _ in rows), _TOKEN_MULTIPLE)
        boundaries = max(1, max(len(spans) for _, _, spans, _ in rows))
        n = len(rows)
        tokens, token_mask = np.zeros((n, length), np.int32), np.zeros((n, length), bool)
        starts, ends = np.zeros((n, boundaries), np.int32), np.zeros((n, boundaries), np.int32)
        present, chosen = np.zeros((n, boundaries), bool), np.zeros((n, boundaries), np.int32)
        for r, (owner, ids, spans, choice) in enumerate(rows):
            tokens[r, :len(ids)], token_mask[r, :len(ids)] = ids, True
            for k, (start, end) in enumerate(spans):
                starts[r, k], ends[r, k], present[r, k] = start, end, True
                chosen[r, k] = choice[k] if choice is not None else 0
        speaker = np.asarray([items[owner].speaker for owner, *_ in rows], np.int32)
        overridden = any(choice is not None for *_, choice in rows)
        if overridden and any(choice is None for *_, choice in rows):
            raise ValueError("give intonation tokens for every item of a batch or for none")
        out = tts.generate(
            self.graphdef, params, self.config.model, tokens, token_mask, speaker, key, steps=steps,
            method=method or s.method, guidance_scale=guidance or None, temperature=temperature,
            length_scale=length_scale, duration_rounding=s.get("duration_rounding", "ceil"), sway=s.sway,
            intonation=chosen if overridden else None, boundary_word_start=starts, boundary_word_end=ends,
            boundary_mask=present)
        mel, mel_mask = np.asarray(out.mel), np.asarray(out.mel_mask)
        silence = math.log(1e-5)  # padding frames must vocode to silence, not to ln-amplitude 0
        out = out._replace(mel=np.where(mel_mask[..., None], mel, silence))
        waveforms = np.asarray(self._vocode(out, jax.random.fold_in(key, 1)))
        hop = self.preset.hop_length
        pieces: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in items]
        for r, (owner, *_) in enumerate(rows):
            frames = int(mel_mask[r].sum())
            pieces[owner].append((mel[r, :frames], waveforms[r, :frames * hop]))
        return [(np.concatenate([m for m, _ in p]), np.concatenate([w for _, w in p])) for p in pieces]


def synthesize_texts(workdir: str, texts: Sequence[str], *, speaker: str | int | None = None,
                     intonation: Sequence[int] | None = None, vocoder: str | None = None, seed: int = 0,
                     **options) -> tuple[list[np.ndarray], int]:
    """(waveforms, sample rate) for ``texts`` with the latest checkpoint of ``workdir``.

    options: ``steps``, ``guidance``, ``temperature``, ``length_scale``, ``method`` (see
    :meth:`Synthesizer.synthesize`). Every text is checked before any is synthesized.
    """
    synthesizer, params, _ = Synthesizer.from_workdir(workdir, vocoder)
    items = [synthesizer.item(text, speaker, intonation) for text in texts]
    synthesizer.rows(items)
    size, key = synthesizer.config.synth.batch_size, jax.random.key(seed)
    waveforms = [waveform for b in range(0, len(items), size)
                 for _, waveform in synthesizer.synthesize(params, items[b:b + size], key=key, **options)]
    return waveforms, synthesizer.preset.sample_rate


def _direction(waveform: np.ndarray, sample_rate: int) -> str | None:
    try:
        return terminal_direction(waveform, sample_rate)
    except ValueError:  # nothing voiced: no contour to judge
        return None


def _share(hits: Sequence[bool]) -> float:
    return float(np.mean(hits)) if len(hits) else float("nan")


def _intonation_metrics(synthesized, references, texts, sample_rate: int) -> dict[str, float]:
    """Terminal contour direction of the synthesized audio against the punctuation (? rises,
    . falls) and against the reference audio's measured direction."""
    expected = [expected_direction(t) for t in texts]
    ours = [_direction(w, sample_rate) if e else None for w, e in zip(synthesized, expected)]
    theirs = [_direction(w, sample_rate) if e else None for w, e in zip(references, expected)]
    judged = [k for k, e in enumerate(expected) if e]
    return {
        "contour_accuracy": _share([ours[k] == expected[k] for k in judged]),
        "question_rising": _share([ours[k] == "rising" for k in judged if expected[k] == "rising"]),
        "statement_falling": _share([ours[k] == "falling" for k in judged if expected[k] == "falling"]),
        "contour_agreement_with_reference": _share([ours[k] == theirs[k] for k in judged]),
        "reference_contour_accuracy": _share([theirs[k] == expected[k] for k in judged]),
        "contours_judged": len(judged),
    }


def _transcribe(asr_workdir: str, files: Sequence[str]) -> list[str]:
    from jaxspeech.train import recipes

    recipe = recipes.for_workdir(asr_workdir)
    if not hasattr(recipe, "transcribe"):
        raise ValueError(f"{asr_workdir} holds no recognizer (recipe {read_saved_config(asr_workdir).recipe!r})")
    return recipe.transcribe(asr_workdir, list(files), beam_size=0)


def evaluate(workdir: str, *, split: str, beam_size: int | None = None, asr_workdir: str | None = None,
             vocoder: str | None = None, steps: int | None = None, guidance: float | None = None,
             temperature: float | None = None, limit: int | None = None) -> dict:
    """Synthesizes every utterance of ``split`` (its text and speaker) and compares with the recording.

    Result (also written to ``eval_<split>.json``; audio to ``eval_<split>/``): ``mcd_db``
    (DTW mel-cepstral distortion against the reference), ``asr_cer``/``asr_wer`` (the synthesized
    audio transcribed by the recognizer in ``asr_workdir``, default ``config.eval.asr_workdir``;
    null with a warning when there is none), ``rtf`` (acoustic model + vocoder seconds per
    second of audio, one utterance at a time, compiled), comma pause MAE, terminal contour
    direction scores, ``nfe``. steps, guidance, temperature: default from ``config.synth``.
    ``beam_size`` belongs to the recipe interface and is unused.
    """
    del beam_size
    synthesizer, params, step = Synthesizer.from_workdir(workdir, vocoder)
    config, preset = synthesizer.config, synthesizer.preset
    e = config.eval
    steps = config.synth.steps if steps is None else steps
    guidance = config.synth.guidance if guidance is None else guidance
    temperature = config.synth.temperature if temperature is None else temperature
    options = dict(steps=steps, guidance=guidance, temperature=temperature)
    skips = SkipCounter()
    records = load_records(config.data.dir, split=split, skips=skips)
    unknown = sorted({speaker_of(r) for r in records} - set(synthesizer.speakers))
    if unknown:
        raise ValueError(f"split {split!r} has speakers the model was not trained on ({', '.join(unknown)}): "
                         "evaluate on a split of the training voices, e.g. test-seen")
    if limit:
        records = records[:limit]
    items, kept = [], []
    for record in records:
        try:
            item = synthesizer.record_item(record)
            synthesizer.rows([item])  # tokenizes now: unknown symbols are a counted skip
        except ValueError as err:
            skips.skip(f"{type(err).__name__}: {err}", record["id"])
            continue
        items.append(item)
        kept.append(record)
    if not kept:
        raise ValueError(f"nothing to synthesize in split {split!r} ({skips.summary()})")
    out_dir = os.path.join(workdir, f"eval_{split}")
    os.makedirs(out_dir, exist_ok=True)
    order = sorted(range(len(items)), key=lambda i: sum(len(p) for p in items[i].pieces))
    waveforms: dict[int, np.ndarray] = {}
    key = jax.random.key(config.seed)
    for b in range(0, len(order), config.synth.batch_size):
        chunk = order[b:b + config.synth.batch_size]
        out = synthesizer.synthesize(params, [items[i] for i in chunk], key=jax.random.fold_in(key, b), **options)
        waveforms.update((i, waveform) for i, (_, waveform) in zip(chunk, out))
    paths = [os.path.join(out_dir, f"{record['id']}.wav") for record in kept]
    synthesized = [waveforms[i] for i in range(len(kept))]
    for path, waveform in zip(paths, synthesized):
        audio.save_audio(path, waveform, preset.sample_rate)
    references = [audio.load_audio(r["audio"], sample_rate=preset.sample_rate) for r in kept]
    texts = [r["text"] for r in kept]

    rtf_items = items[: e.rtf_utterances]
    seconds = sum(time_call(synthesizer.synthesize, params, [item], key=key, warmup=1, repeats=e.rtf_repeats,
                            **options) for item in rtf_items)
    audio_seconds = sum(len(waveforms[i]) for i in range(len(rtf_items))) / preset.sample_rate

    result = {"split": split, "step": step, "utterances": len(kept), "skipped": skips.total,
              **options, "nfe": steps * (2 if guidance else 1),
              "vocoder": vocoder or config.synth.vocoder,
              "mcd_db": float(np.mean([mel_cepstral_distortion(s, r, preset=preset)
                                       for s, r in zip(synthesized, references)])),
              "rtf": seconds / audio_seconds,
              **comma_pause_mae(synthesized, references, texts, preset.sample_rate),
              **_intonation_metrics(synthesized, references, texts, preset.sample_rate)}
    asr_workdir = asr_workdir or e.asr_workdir
    if asr_workdir and os.path.isfile(os.path.join(asr_workdir, "config.json")):
        rates = error_rates(texts, _transcribe(asr_workdir, paths))
        result.update(asr_cer=rates["cer"], asr_wer=rates["wer"], asr_workdir=asr_workdir)
    else:
        log.warning("no recognizer at %r: asr_cer not measured (train configs/asr_ctc_tiny.py and pass "
                    "--asr-workdir)", asr_workdir)
        result.update(asr_cer=None, asr_wer=None, asr_workdir=None)
    result = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in result.items()}  # valid JSON
    with open(os.path.join(workdir, f"eval_{split}.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    return result
