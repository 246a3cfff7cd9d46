"""Text-to-speech (``jaxspeech.models.tts``): train, evaluate, synthesize from a workdir.

A workdir holds ``config.json`` (resolved config, with the vocabulary size, speaker count and
mel statistics measured on the training split), ``vocab.json`` (phoneme tokenizer with the
break symbol), ``speakers.json``, ``checkpoints/`` (orbax), ``metrics.jsonl`` + TensorBoard
events (a synthesized validation mel with its F0, its audio and the loss terms),
``data_stats.json``, ``eval_<split>.json`` and ``eval_<split>/`` (synthesized audio).

The model, its objective, synthesis and evaluation live in ``jaxspeech.models.tts``; this module
only ties them to a workdir: data, training, restoring, and the vocoder a name stands for
(built-in, or the workdir of a trained vocoder). Any objective trains here (the name is the first
one's): a student of a teacher (CD, ECT, CTM) starts from the teacher's workdir
(``recipes.tts_teacher``), and an objective with a moving-average target keeps it in the train state.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence

import jax
import ml_collections
import numpy as np

from jaxspeech import audio
from jaxspeech.data.bucketing import make_buckets
from jaxspeech.data.manifest import SkipCounter
from jaxspeech.data.pipeline import SpeechBatches, SpeechDataset
from jaxspeech.data.readers import load_records
from jaxspeech.data.tts import DEFAULT_SPEAKER, TTSCollate, phrased_record, pitch_track, speaker_of, tokenizer_for
from jaxspeech.models import neural_vocoder, tts
from jaxspeech.models.tts import matcha_import
from jaxspeech.models.tts.evaluation import MODEL_MEL, evaluate_items, score_saved_audio
from jaxspeech.models.tts.synthesizer import Synthesizer
from jaxspeech.models.tts.vocoders import BUILTIN_VOCODERS, GRIFFIN_LIM, Vocoder, builtin_vocoder
from jaxspeech.text import Tokenizer
from jaxspeech.text.phrasing import BREAK
from jaxspeech.train import recipes
from jaxspeech.train.config import read_saved_config, save_config
from jaxspeech.train.loop import train_in_workdir
from jaxspeech.train.metrics import MetricWriter, plot_mel, write_data_stats
from jaxspeech.train.recipes.tts_teacher import adopt_teacher, load_teacher, params_from_teacher, read_run_config
from jaxspeech.train.run_setup import (
    bucketed_batches,
    initial_state,
    mesh_from_config,
    optimizer_from_config,
    restore_state,
    workdir_file,
)
from jaxspeech.train.step import TrainProgress, compile_recipe_step

log = logging.getLogger(__name__)
_VOCAB, _SPEAKERS = "vocab.json", "speakers.json"


def _vocabulary(records, workdir) -> tuple[Tokenizer, list[str]]:
    """The phoneme tokenizer and speaker names of a run: built from the training records, or read
    back when resuming (they must not change under a checkpoint)."""

    def build_tokenizer() -> Tokenizer:
        tokenizer = tokenizer_for(records)
        if BREAK not in tokenizer.symbols:
            raise ValueError("the training phonemes have no word boundary: cannot learn phrase breaks")
        return tokenizer

    tokenizer = workdir_file(workdir, _VOCAB, build_tokenizer, load=Tokenizer.load, save=lambda t, p: t.save(p))
    speakers = workdir_file(workdir, _SPEAKERS, lambda: sorted({speaker_of(r) for r in records}))
    return tokenizer, speakers


def phoneme_labeler(tokenizer: Tokenizer):
    """A record's phrased phonemes (break tokens between words) as token ids [L]."""
    return lambda record: tokenizer.encode(phrased_record(record).text)


def batch_collate(config, speakers: Sequence[str]) -> TTSCollate:
    """The batch builder of a run: speakers, boundaries and contours as the model's batch contract."""
    return TTSCollate({name: i for i, name in enumerate(speakers)}, max_boundaries=config.data.max_boundaries,
                      contour_points=config.model.intonation.contour_points)


def ordered_batches(config: ml_collections.ConfigDict, tokenizer: Tokenizer, speakers: Sequence[str],
                    records: Sequence[dict], *, num_threads: int = 1) -> tuple[SpeechDataset, SpeechBatches]:
    """``records`` as labelled features (cached) in fixed, unshuffled batches of one bucket: the validation
    batches and the diagnostics' passes over a split. A short last batch is filled with empty rows (index -1)."""
    d = config.data
    dataset = SpeechDataset(records, preset=d.preset, labeler=phoneme_labeler(tokenizer), skips=SkipCounter(),
                            cache=True)
    loader = SpeechBatches(dataset, make_buckets(dataset.lengths, max_frames=d.max_frames, num_buckets=1),
                           shuffle=False, num_threads=num_threads, collate=batch_collate(config, speakers))
    return dataset, loader


def _hz(log_f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """A pitch track as Hz on voiced frames, 0 elsewhere (for plots)."""
    return np.where(voiced, np.exp(log_f0), 0.0)


def _ema_decay(model_config: ml_collections.ConfigDict) -> float | None:
    """The moving-average rate of the objective's target network, or None when it reads none."""
    objective, objective_config = tts.objective_of(model_config)
    return objective_config.ema_decay if "target" in objective.needs else None


def train(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Trains (or resumes) a text-to-speech model in ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    teacher = load_teacher(config)
    if teacher is not None:
        adopt_teacher(config, teacher, workdir)
    skips = SkipCounter()
    d = config.data
    records = load_records(d.dir, split=d.train_split, skips=skips)
    tokenizer, speakers = _vocabulary(records, workdir)
    dataset = SpeechDataset(records, preset=d.preset, labeler=phoneme_labeler(tokenizer), skips=skips,
                            cache=d.cache_features, max_seconds=d.max_seconds)
    # MAS gives every token at least one frame.
    dataset.keep(lambda frames, label: len(label) <= frames, "more phoneme tokens than mel frames")
    m = config.model
    m.vocab_size, m.num_speakers, m.break_token = tokenizer.vocab_size, len(speakers), tokenizer.symbols.index(BREAK)
    m.pitch.mel_preset = d.preset  # the filters a harmonic-comb pitch input is drawn on
    m.n_mels = audio.get_preset(d.preset).n_mels  # the data's mel bins, whatever the preset
    if teacher is None:  # a student keeps its teacher's statistics
        m.mel_mean, m.mel_std = dataset.mel_statistics()
    save_config(config, workdir)

    mesh = mesh_from_config(config)
    batches = bucketed_batches(config, dataset, collate=batch_collate(config, speakers))
    write_data_stats(workdir, {**batches.describe(), "speakers": len(speakers), "vocab_size": tokenizer.vocab_size,
                               "mel_mean": m.mel_mean, "mel_std": m.mel_std, "skips": dict(skips.counts)})

    optimizer = optimizer_from_config(config)
    graphdef, params = tts.init(m, jax.random.key(config.seed))
    if teacher is not None:
        params = params_from_teacher(params, teacher.params)
    ema_decay = _ema_decay(m)
    loss_fn = tts.make_loss_fn(graphdef, m, total_steps=config.train.steps,
                               teacher=None if teacher is None else teacher.network)
    step_fn, state = compile_recipe_step(loss_fn, optimizer, initial_state(config, params, optimizer,
                                                                           ema=ema_decay is not None),
                                         mesh, config, with_progress=True, ema_decay=ema_decay)

    # Fixed validation batches (deterministic loss with a fixed key) and one sentence to synthesize.
    valid, valid_loader = ordered_batches(config, tokenizer, speakers, load_records(d.dir, split=d.eval_split),
                                          num_threads=d.num_threads)
    valid_batches = [next(valid_loader) for _ in range(min(config.train.eval_batches, valid_loader.batches_per_epoch))]
    eval_loss = jax.jit(tts.make_loss_fn(graphdef, m, train=False, total_steps=config.train.steps,
                                         teacher=None if teacher is None else teacher.network))
    writer = MetricWriter(workdir)
    vocoder = config.synth.vocoder if config.synth.vocoder in BUILTIN_VOCODERS else GRIFFIN_LIM
    synthesizer = Synthesizer(config, tokenizer, speakers, graphdef, builtin_vocoder(vocoder, config))
    sample = valid.records[0]
    reference_f0 = _hz(*pitch_track(audio.load_audio(sample["audio"], sample_rate=synthesizer.preset.sample_rate),
                                    synthesizer.preset))

    def evaluate_valid(state) -> dict[str, float]:
        key = jax.random.key(config.seed)
        progress = TrainProgress(state.step, state.ema)
        metrics = [jax.device_get(eval_loss(state.params, batch, key, progress)[1]) for batch in valid_batches]
        [(mel, waveform)] = synthesizer.synthesize(state.params, [synthesizer.record_item(sample)], key=key)
        f0 = {"synthesized": _hz(*pitch_track(waveform, synthesizer.preset)), "recording": reference_f0}
        writer.image(int(state.step), "valid/synthesized_mel", plot_mel(mel, title=sample["text"], f0=f0))
        writer.audio(int(state.step), "valid/synthesized", waveform, synthesizer.preset.sample_rate)
        return {name: float(np.mean([x[name] for x in metrics])) for name in metrics[0]}

    train_in_workdir(config, workdir, state=state, step_fn=step_fn, batches=batches, mesh=mesh, writer=writer,
                     eval_fn=evaluate_valid, skips=skips)


def vocoder_for(name: str, config: ml_collections.ConfigDict) -> Vocoder:
    """A built-in vocoder by name, a PyTorch HiFi-GAN generator file or Vocos directory, or the trained
    vocoder of a workdir (same mel preset)."""
    if name in BUILTIN_VOCODERS:
        return builtin_vocoder(name, config)
    if os.path.isfile(name) or os.path.isfile(os.path.join(name, "pytorch_model.bin")):
        imported = neural_vocoder.imported_vocoder(name, preset=config.data.preset)
        return lambda out, key: imported(out.mel, out.mel_mask)
    if not os.path.isfile(os.path.join(name, "config.json")):
        raise ValueError(f"unknown vocoder {name!r}; known: {', '.join(BUILTIN_VOCODERS)}, a HiFi-GAN generator "
                         "file, a Vocos directory, or the workdir of a trained vocoder")
    from jaxspeech.train.recipes import vocoder as vocoder_recipe

    vocoder_config = read_saved_config(name)
    if vocoder_config.model.preset != config.data.preset:
        raise ValueError(f"vocoder {name} works on {vocoder_config.model.preset!r} mels, the TTS model "
                         f"on {config.data.preset!r}")
    trained = vocoder_recipe.vocode(name)
    return lambda out, key: trained(out.mel, out.mel_mask)


def _imported_synthesizer(checkpoint: str, vocoder: str | None) -> tuple[Synthesizer, object, int]:
    """(synthesizer, params, 0) of a Matcha-TTS checkpoint, with Matcha's synthesis settings."""
    model_config, graphdef, params = matcha_import.import_matcha_checkpoint(checkpoint)
    config = matcha_import.run_config(model_config)
    synthesizer = Synthesizer(config, matcha_import.matcha_tokenizer(), [DEFAULT_SPEAKER], graphdef,
                              vocoder_for(vocoder or config.synth.vocoder, config))
    return synthesizer, params, 0


def load_synthesizer(workdir: str, vocoder: str | None = None) -> tuple[Synthesizer, object, int]:
    """(synthesizer, params, step) of the latest readable checkpoint of ``workdir`` (or of a Matcha-TTS
    ``.ckpt`` file, ``models.tts.matcha_import``); ``vocoder``: a name or vocoder workdir (default: the
    config's ``synth.vocoder``)."""
    if os.path.isfile(workdir):
        return _imported_synthesizer(workdir, vocoder)
    config = read_run_config(workdir)
    graphdef, params = tts.init(config.model, jax.random.key(0))
    state = restore_state(workdir, config, params, optimizer_from_config(config),
                          ema=_ema_decay(config.model) is not None)
    with open(os.path.join(workdir, _SPEAKERS), encoding="utf-8") as f:
        speakers = json.load(f)
    tokenizer = Tokenizer.load(os.path.join(workdir, _VOCAB))
    synthesizer = Synthesizer(config, tokenizer, speakers, graphdef, vocoder_for(vocoder or config.synth.vocoder,
                                                                                  config))
    return synthesizer, state.params, int(state.step)


def sampler_settings(values: Sequence[str] | Mapping[str, object] | None) -> dict:
    """Sampler options from ``["gamma=1", "sigmas=[80, 0.8]"]`` (values read as JSON, else kept as
    text) or from a mapping; None = none."""
    if values is None or isinstance(values, Mapping):
        return dict(values or {})
    settings = {}
    for item in values:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--sampler takes NAME=VALUE (e.g. gamma=1), got {item!r}")
        try:
            settings[name] = json.loads(text)
        except json.JSONDecodeError:
            settings[name] = text
    return settings


def _options(guidance: float | None, steps: int | None, temperature: float | None,
             sampler: Sequence[str] | Mapping[str, object] | None = None) -> dict:
    """Synthesis options a user gave (None = the config's): guidance and sampler options; ``steps`` and
    ``temperature`` override the same names in ``sampler``."""
    given = {"guidance": guidance, "steps": steps, "temperature": temperature}
    return {**sampler_settings(sampler), **{name: value for name, value in given.items() if value is not None}}


def intonation_tokens(value: str | Sequence[int] | None) -> list[int] | None:
    """Intonation tokens from "2" or "2,0,5" (or a sequence of ints)."""
    if value is None or not isinstance(value, str):
        return None if value is None else [int(k) for k in value]
    try:
        return [int(k) for k in value.split(",")]
    except ValueError:
        raise ValueError(f"--intonation takes token indices like 2 or 2,0,5, got {value!r}") from None


def synthesize(workdir: str, texts: Sequence[str], *, speaker: str | int | None = None,
               intonation: str | Sequence[int] | None = None, vocoder: str | None = None, seed: int | None = None,
                 steps: int | None = None, guidance: float | None = None, temperature: float | None = None,
               length_scale: float | None = None, sampler: Sequence[str] | Mapping[str, object] | None = None
               ) -> tuple[list[np.ndarray], int]:
    """(waveforms, sample rate) for ``texts`` with the latest checkpoint of ``workdir``; every text
    is checked before any is synthesized. Unset options take the config's ``synth`` values.
    intonation: one token for every phrase boundary, or one per boundary ("2,0,5")."""
    intonation = intonation_tokens(intonation)
    synthesizer, params, _ = load_synthesizer(workdir, vocoder)
    items = [synthesizer.item(text, speaker, intonation) for text in texts]
    synthesizer.rows(items)
    size, key = synthesizer.config.synth.batch_size, jax.random.key(seed or 0)
    options = {**_options(guidance, steps, temperature, sampler), "length_scale": length_scale or 1.0}
    waveforms = [waveform for b in range(0, len(items), size)
                 for _, waveform in synthesizer.synthesize(params, items[b:b + size], key=key, **options)]
    return waveforms, synthesizer.preset.sample_rate


def score_audio(workdir: str, audio_dir: str, *, split: str, asr_workdir: str | None = None) -> dict:
    """The scores of :func:`evaluate` for audio it wrote with ``score=False`` (``eval_<split>/``, copied to
    ``audio_dir``, e.g. from a GPU machine), against the records of ``split`` that have a file there."""
    config = read_run_config(workdir)
    records = [r for r in load_records(config.data.dir, split=split)
               if os.path.isfile(os.path.join(audio_dir, f"{r['id']}.wav"))]
    if not records:
        raise ValueError(f"no audio of split {split!r} in {audio_dir}")
    asr_workdir = asr_workdir or config.eval.asr_workdir
    transcribe = _recognizer(asr_workdir)
    scores = score_saved_audio(audio_dir, records, audio.get_preset(config.data.preset), transcribe)
    return {"split": split, "utterances": len(records),
            "asr_workdir": asr_workdir if transcribe else None, **scores}


def _recognizer(asr_workdir: str | None):
    """The transcriber of ``asr_workdir``, or None with a warning when it holds no trained recognizer."""
    if asr_workdir and os.path.isfile(os.path.join(asr_workdir, "config.json")):
        return _transcriber(asr_workdir)
    log.warning("no recognizer at %r: asr_cer not measured (train configs/asr_ctc_tiny.py and pass "
                "--asr-workdir)", asr_workdir)
    return None


def _transcriber(asr_workdir: str):
    recognizer = recipes.for_workdir(asr_workdir).require("transcribe")
    return lambda files: recognizer(asr_workdir, list(files), beam_size=0)


def evaluate(workdir: str, *, split: str, asr_workdir: str | None = None, vocoder: str | None = None,
             steps: int | None = None, guidance: float | None = None, temperature: float | None = None,
             limit: int | None = None, sampler: Sequence[str] | Mapping[str, object] | None = None,
             score: bool = True) -> dict:
    """Synthesizes every utterance of ``split`` (its text and speaker) and scores it against the
    recording (``jaxspeech.models.tts.evaluation``): with the vocoder, and with Griffin-Lim on the
    model's own mel (``griffin_lim_on_model_mel``). ASR figures use the recognizer of
    ``asr_workdir`` (default ``config.eval.asr_workdir``; null with a warning when there is none).
    Written to ``eval_<split>.json``; audio to ``eval_<split>/``. ``score=False``: audio and RTFs only,
    neither recordings nor recognizer needed (a GPU machine); :func:`score_audio` scores it later."""
    synthesizer, params, step = load_synthesizer(workdir, vocoder)
    config = synthesizer.config
    skips = SkipCounter()
    records = load_records(config.data.dir, split=split, skips=skips)
    unknown = sorted({speaker_of(r) for r in records} - set(synthesizer.speakers))
    if unknown:
        raise ValueError(f"split {split!r} has speakers the model was not trained on ({', '.join(unknown)}): "
                         "evaluate on a split of the training voices, e.g. test-seen")
    items, kept = [], []
    for record in records[:limit or None]:
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
    asr_workdir = asr_workdir or config.eval.asr_workdir
    transcribe = _recognizer(asr_workdir) if score else None
    vocoder = vocoder or config.synth.vocoder
    reference = {} if vocoder == GRIFFIN_LIM else {MODEL_MEL: builtin_vocoder(GRIFFIN_LIM, config)}
    options = _options(guidance, steps, temperature, sampler)
    sampler = {**config.synth.sampler.to_dict(), **{k: v for k, v in options.items() if k != "guidance"}}
    objective, _ = tts.objective_of(config.model)
    e = config.eval
    scores = evaluate_items(synthesizer, params, items, kept, out_dir=os.path.join(workdir, f"eval_{split}"),
                            key=jax.random.key(config.seed), batch_size=config.synth.batch_size,
                            rtf_utterances=e.rtf_utterances, rtf_repeats=e.rtf_repeats,
                            reference_vocoders=reference, transcribe=transcribe, score=score, **options)
    guidance = options.get("guidance", config.synth.guidance)
    result = {"split": split, "step": step, "utterances": len(kept), "skipped": skips.total, "vocoder": vocoder,
              "objective": objective.name, "sampler": sampler, "guidance": guidance,
              "nfe": objective.evaluations(**sampler) * (2 if guidance else 1),
              "asr_workdir": asr_workdir if transcribe else None, **scores}
    with open(os.path.join(workdir, f"eval_{split}.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    return result


_VOCODER_HELP = ("griffin-lim, harmonic (harmonic-plus-noise at the predicted F0; models with a pitch predictor) "
                 "a vocoder workdir, a PyTorch HiFi-GAN generator file (HiFi-GAN's or Matcha-TTS's generator_v1; "
                 "config.json beside it, else V1) or a Vocos directory (config.yaml + pytorch_model.bin) "
                 "(default: the config's)")


def _synthesis_options(parser) -> None:
    parser.add_argument("--vocoder", default=None, help=_VOCODER_HELP)
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the config's)")
    parser.add_argument("--cfg", dest="guidance", type=float, default=None,
                        help="classifier-free guidance scale, 0 = off (default: the config's)")
    parser.add_argument("--temperature", type=float, default=None, help="noise temperature (default: the config's)")
    parser.add_argument("--sampler", action="append", default=None, metavar="NAME=VALUE",
                        help="any other option of the objective's sampler, e.g. gamma=1 or 'sigmas=[80, 0.8]' "
                             "(repeatable)")


def _evaluate_options(parser) -> None:
    parser.add_argument("--asr-workdir", default=None, help="recognizer for asr_cer (default: the config's)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N utterances only")
    _synthesis_options(parser)


def _synthesize_options(parser) -> None:
    parser.add_argument("--speaker", default=None, help="speaker name or index (default: the first)")
    parser.add_argument("--length-scale", type=float, default=None, help="> 1 speaks slower (default: 1)")
    parser.add_argument("--intonation", default=None,
                        help="intonation token for every phrase boundary (K) or one per boundary (K1,K2,...)")
    parser.add_argument("--seed", type=int, default=None, help="noise seed (default: 0)")
    _synthesis_options(parser)


RECIPE = recipes.register(recipes.Recipe("tts_fm", train, evaluate=evaluate, synthesize=synthesize,
                                         options={"evaluate": _evaluate_options, "synthesize": _synthesize_options}))
