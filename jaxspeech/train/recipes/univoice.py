"""UniVoice (``jaxspeech.models.univoice``): one model for ASR and TTS; train, evaluate, transcribe and
synthesize (zero-shot, from a prompt clip and its text) from a workdir.

A workdir holds ``config.json`` (resolved config, with the vocabulary size and the training data's
frames per character), ``vocab.json``, ``checkpoints/``, ``metrics.jsonl`` + TensorBoard events
(valid losses, valid ASR CER, a cloned valid sentence's mel), ``data_stats.json`` and
``eval_<split>.json`` (+ ``eval_<split>/`` audio).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time

import jax
import ml_collections
import numpy as np

from jaxspeech import audio
from jaxspeech.data.bucketing import make_buckets
from jaxspeech.data.manifest import SkipCounter
from jaxspeech.data.packing import PackingSpec
from jaxspeech.data.pipeline import SpeechBatches, SpeechDataset
from jaxspeech.data.readers import load_records
from jaxspeech.data.tts import speaker_of
from jaxspeech.data.univoice import (
    EOS,
    PretrainedVocabulary,
    WhisperFeatures,
    spoken_text,
    symbol_id,
    task_records,
    univoice_collate,
    univoice_labeler,
    univoice_tokenizer,
)
from jaxspeech.eval import error_rates
from jaxspeech.models import llm, univoice, whisper
from jaxspeech.models.checkpoint_import import CheckpointError
from jaxspeech.models.llm.config import LlmConfig
from jaxspeech.models.univoice import flow_omni
from jaxspeech.models.univoice.inference import UniVoiceSpeech
from jaxspeech.models.whisper.config import WhisperConfig
from jaxspeech.text import Tokenizer
from jaxspeech.train import recipes
from jaxspeech.train.config import read_saved_config, save_config
from jaxspeech.train.loop import train_in_workdir
from jaxspeech.train.metrics import MetricWriter, plot_mel, write_data_stats
from jaxspeech.train.run_setup import (
    bucketed_batches,
    initial_state,
    mesh_from_config,
    optimizer_from_config,
    restore_state,
    workdir_file,
)
from jaxspeech.train.step import compile_recipe_step

log = logging.getLogger(__name__)
_VOCAB = "vocab.json"  # the character vocabulary
_PRETRAINED_VOCAB = "tokenizer"  # or the pretrained LLM's tokenizer with the task symbols (a directory)
_LLM_FIELDS = tuple(f.name for f in dataclasses.fields(LlmConfig))
_MODEL_FIELDS = ("n_mels", "audio_encoder", "freeze_audio_encoder", "encoder_dim", "encoder_layers",
                 "encoder_heads", "encoder_ff_mult", "encoder_conv_kernel", "encoder_subsampling_channels",
                 "encoder_dropout", "pool", "ctc_upsample", "time_sinusoid_dim", "tts_head", "flow_head_width",
                 "flow_head_blocks", "frame_text", "frame_text_blocks", "mel_mean", "mel_std")  # fmt: skip


def model_config(model: ml_collections.ConfigDict) -> univoice.UniVoiceConfig:
    """The UniVoiceConfig of a run config's ``model`` section (``whisper_config``: the Whisper
    architecture as transformers' config.json text, written when training starts)."""
    whisper = None
    if model.audio_encoder == "whisper":
        whisper = WhisperConfig.from_transformers(json.loads(model.whisper_config))
    fields = {name: model[name] for name in _MODEL_FIELDS if name in model}  # older runs: the defaults
    return univoice.UniVoiceConfig(llm=LlmConfig(**model.llm.to_dict()), whisper=whisper, **fields)


def _optimizer(config: ml_collections.ConfigDict):
    """AdamW of the run; a frozen audio encoder gets no weight decay (and no gradient: it never moves)."""
    if not config.model.freeze_audio_encoder:
        return optimizer_from_config(config)

    def decay_mask(params):
        mask = jax.tree.map(lambda _: True, params)
        mask["audio_encoder"] = jax.tree.map(lambda _: False, params["audio_encoder"])
        return mask

    return optimizer_from_config(config, decay_mask=decay_mask)


def _collate(config: ml_collections.ConfigDict):
    """The batch builder: UniVoice rows, plus Whisper's input window for a Whisper audio encoder."""
    if config.model.audio_encoder == "whisper":
        return WhisperFeatures(f"whisper_{model_config(config.model).whisper.n_mels}")
    return univoice_collate


def train_packing(config: ml_collections.ConfigDict, dataset: SpeechDataset, collate) -> PackingSpec | None:
    """How the training batches pack their LLM rows (``data.pack``), from each row's task, text and frames."""
    d = config.data
    if not d.get("pack", False):
        return None
    if config.train.accum_steps > 1:
        raise ValueError("data.pack plans whole batches, which gradient accumulation would split: set "
                         "train.accum_steps=1 (packing already fills the rows) or data.pack=False")
    model = model_config(config.model)
    window = collate.window if isinstance(collate, WhisperFeatures) else None  # Whisper reads its whole window
    tts = np.array([r["task"] == "tts" for r in dataset.records])
    frames = dataset.lengths
    item_tokens = univoice.row_tokens(model, text=np.array([len(label) for label in dataset.labels]), frames=frames,
                                      tts=tts, feature_frames=np.where(tts, 0, window or frames))  # fmt: skip

    def row_length(frame_capacity: int, text_capacity: int) -> int:
        speech = int(univoice.speech_length(model, window or frame_capacity))
        return univoice.sequence_length(model, speech=speech, text=text_capacity, frames=frame_capacity)

    return PackingSpec(item_tokens, row_length, functools.partial(univoice.batch_row_tokens, model),
                       fill=d.pack_fill, length_factor=d.pack_length_factor, row_multiple=d.row_multiple)


def _whisper_encoder(config: ml_collections.ConfigDict):
    """The encoder params of ``model.whisper_checkpoint`` (a transformers Whisper directory), its
    architecture written into ``model.whisper_config``; None for another audio encoder."""
    if config.model.audio_encoder != "whisper":
        return None
    if not config.model.whisper_checkpoint:
        raise ValueError("audio_encoder='whisper' needs model.whisper_checkpoint (a transformers Whisper directory)")
    whisper_config, _, params = whisper.import_transformers_checkpoint(config.model.whisper_checkpoint)
    config.model.whisper_config = json.dumps(whisper_config.to_transformers())
    return params["encoder"]


def make_loss_fn(config: ml_collections.ConfigDict, graphdef, *, blank_id: int, train: bool = True):
    """The run's loss: UniVoice's infilling loss, or Flow-Omni's per-frame one (``model.tts_head``);
    ``blank_id``: the vocabulary's ``<eos>``, the blank of the encoder's CTC (``loss.ctc_weight``)."""
    loss = config.loss
    if loss.ctc_weight and config.model.freeze_audio_encoder:
        raise ValueError("loss.ctc_weight > 0 trains the audio encoder, which model.freeze_audio_encoder freezes: "
                         "set loss.ctc_weight=0")
    if config.model.get("ctc_upsample", 1) > 1 and not loss.ctc_weight:
        raise ValueError("model.ctc_upsample > 1 adds an upsampler that only the encoder's CTC trains, and "
                         "loss.ctc_weight is 0: set model.ctc_upsample=1")
    augment = config.model.get("specaugment")  # older runs have none
    on = augment is not None and (augment.num_freq_masks or augment.num_time_masks)
    augment = augment.to_dict() if on else None
    common = dict(ctc_weight=loss.ctc_weight, blank_id=blank_id, specaugment=augment, train=train)
    if config.model.tts_head == "flow_omni":
        return flow_omni.make_loss_fn(graphdef, lm_weight=loss.lm_weight, stop_weight=loss.stop_weight,
                                      flow_repeats=loss.flow_repeats, t_min=loss.t_min, **common)  # fmt: skip
    return univoice.make_loss_fn(graphdef, lm_weight=loss.lm_weight, lm_loss=loss.lm_loss,
                                 infill_fraction=tuple(loss.infill_fraction), audio_drop=loss.audio_drop,
                                 text_drop=loss.text_drop, t_min=loss.t_min, **common)  # fmt: skip


def _dataset(records, config, tokenizer, skips=None) -> SpeechDataset:
    d = config.data
    return SpeechDataset(task_records(records), preset=d.preset, labeler=univoice_labeler(tokenizer), skips=skips,
                         cache=d.cache_features, max_seconds=d.max_seconds)  # fmt: skip


def _frames_per_char(dataset: SpeechDataset) -> float:
    chars = sum(len(spoken_text(r["text"])) for r in dataset.records)
    return float(dataset.lengths.sum()) / max(chars, 1)


def speech_from(config: ml_collections.ConfigDict, tokenizer: Tokenizer, graphdef, params) -> UniVoiceSpeech:
    s = config.synth
    return UniVoiceSpeech(model_config(config.model), tokenizer, graphdef, params, preset=config.data.preset,
                          max_new_tokens=config.decode.max_new_tokens, steps=s.steps, guidance=s.guidance,
                          sway=s.sway, frames_per_char=s.frames_per_char, max_frames=s.max_frames,
                          head_steps=s.head_steps, temperature=s.temperature)  # fmt: skip


def _load_wave(record: dict, preset: audio.MelPreset) -> np.ndarray:
    return audio.load_audio(record["audio"], sample_rate=preset.sample_rate)


def _prompt_and_target(records: list[dict]) -> tuple[dict | None, dict]:
    """Two utterances of one speaker (the first such pair), or (None, the first utterance) if none."""
    seen: dict[str, dict] = {}
    for record in records:
        if (speaker := speaker_of(record)) in seen:
            return seen[speaker], record
        seen[speaker] = record
    return None, records[0]


def _vocabulary(config: ml_collections.ConfigDict, records: list[dict], workdir: str):
    """The run's vocabulary, read back when resuming: the pretrained LLM's tokenizer with the task symbols
    (``init.llm_checkpoint``), else characters of the training texts."""
    if config.init.llm_checkpoint:
        return workdir_file(workdir, _PRETRAINED_VOCAB,
                            lambda: _pretrained_vocabulary(config.init.llm_checkpoint),
                            load=_pretrained_vocabulary, save=lambda v, p: v.save(p))  # fmt: skip
    return workdir_file(workdir, _VOCAB, lambda: univoice_tokenizer(r["text"] for r in records),
                        load=Tokenizer.load, save=lambda t, p: t.save(p))  # fmt: skip


def _pretrained_vocabulary(path: str) -> PretrainedVocabulary:
    return PretrainedVocabulary(llm.load_tokenizer(path))


def _load_vocabulary(workdir: str):
    if os.path.isdir(os.path.join(workdir, _PRETRAINED_VOCAB)):
        return _pretrained_vocabulary(os.path.join(workdir, _PRETRAINED_VOCAB))
    return Tokenizer.load(os.path.join(workdir, _VOCAB))


def _pretrained_llm(config: ml_collections.ConfigDict, vocab_size: int):
    """The params of ``init.llm_checkpoint`` (a transformers LLaMA-family directory) grown to ``vocab_size``
    tokens, with its architecture written into ``config.model.llm`` (None without a checkpoint)."""
    if not config.init.llm_checkpoint:
        return None
    llm_config, _, params = llm.import_transformers_checkpoint(config.init.llm_checkpoint)
    llm_config, params = llm.resize_vocabulary(llm_config, params, vocab_size)
    for name in _LLM_FIELDS:
        if name not in ("attention_impl", "dropout"):  # run settings, not architecture
            config.model.llm[name] = getattr(llm_config, name)
    return params


def _with_part(params, part: str, imported, source: str):
    """``params`` with ``params[part]`` replaced by ``imported`` (CheckpointError if their shapes differ)."""
    shapes = lambda tree: jax.tree.map(lambda x: x.shape, tree)  # noqa: E731
    if shapes(params[part]) != shapes(imported):
        raise CheckpointError(f"{source}: its parameters do not fit this UniVoice model's {part}")
    params[part] = imported
    return params


def train(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Trains (or resumes) a UniVoice model in ``workdir``."""
    asr_decoding = decoding(config)  # bad decoding settings fail before training, not at the first evaluation
    os.makedirs(workdir, exist_ok=True)
    skips = SkipCounter()
    d = config.data
    records = load_records(d.dir, split=d.train_split, skips=skips)
    tokenizer = _vocabulary(config, records, workdir)
    dataset = _dataset(records, config, tokenizer, skips)
    pretrained = _pretrained_llm(config, tokenizer.vocab_size)
    audio_encoder = _whisper_encoder(config)
    config.model.llm.vocab_size = tokenizer.vocab_size
    config.synth.frames_per_char = _frames_per_char(dataset)
    config.model.mel_mean, config.model.mel_std = dataset.mel_statistics()
    save_config(config, workdir)
    mesh = mesh_from_config(config)
    collate = _collate(config)
    batches = bucketed_batches(config, dataset, collate=collate, packing=train_packing(config, dataset, collate))
    write_data_stats(workdir, {**batches.describe(), "vocab_size": tokenizer.vocab_size,
                               "frames_per_char": config.synth.frames_per_char, "mel_mean": config.model.mel_mean,
                               "mel_std": config.model.mel_std, "skips": dict(skips.counts)})  # fmt: skip

    optimizer = _optimizer(config)
    graphdef, params = univoice.init(model_config(config.model), jax.random.key(config.seed))
    if pretrained is not None:
        params = _with_part(params, "llm", pretrained, config.init.llm_checkpoint)
    if audio_encoder is not None:
        params = _with_part(params, "audio_encoder", audio_encoder, config.model.whisper_checkpoint)
    blank_id = symbol_id(tokenizer, EOS)
    step_fn, state = compile_recipe_step(make_loss_fn(config, graphdef, blank_id=blank_id), optimizer,
                                         initial_state(config, params, optimizer), mesh, config)

    valid_records = load_records(d.dir, split=d.eval_split)
    valid = _dataset(valid_records, config, tokenizer)
    valid_loader = SpeechBatches(valid, make_buckets(valid.lengths, max_frames=d.max_frames, num_buckets=1),
                                 shuffle=False, num_threads=d.num_threads, collate=_collate(config))  # fmt: skip
    valid_batches = [next(valid_loader) for _ in range(min(config.train.eval_batches, valid_loader.batches_per_epoch))]
    eval_loss = jax.jit(make_loss_fn(config, graphdef, blank_id=blank_id, train=False))
    writer = MetricWriter(workdir)
    preset = audio.get_preset(d.preset)
    asr_records = valid_records[: config.train.eval_asr_utterances]
    asr_waves = [_load_wave(r, preset) for r in asr_records]
    prompt, target = _prompt_and_target(valid_records)
    prompt_options = {} if prompt is None else dict(prompt_audio=_load_wave(prompt, preset), prompt_text=prompt["text"])

    def evaluate_valid(state) -> dict[str, float]:
        key = jax.random.key(config.seed)
        metrics = [jax.device_get(eval_loss(state.params, batch, key)[1]) for batch in valid_batches]
        names = ("flow_mse", "lm_loss", "token_accuracy", "encoder_ctc")
        result = {name: float(np.mean([m[name] for m in metrics])) for name in names if name in metrics[0]}
        speech = speech_from(config, tokenizer, graphdef, state.params)
        hyps = speech.transcribe(asr_waves, **asr_decoding)
        result["asr_cer"] = error_rates([r["text"] for r in asr_records], hyps)["cer"]
        [mel] = speech.synthesize([target["text"]], key=key, **prompt_options)
        writer.image(int(state.step), "valid/cloned_mel", plot_mel(mel, title=target["text"]))
        return result

    train_in_workdir(config, workdir, state=state, step_fn=step_fn, batches=batches, mesh=mesh, writer=writer,
                     eval_fn=evaluate_valid, skips=skips)


def load_speech(workdir: str) -> tuple[UniVoiceSpeech, ml_collections.ConfigDict, int]:
    """(speech, config, step) of the latest readable checkpoint of ``workdir``."""
    config = read_saved_config(workdir)
    graphdef, params = univoice.init(model_config(config.model), jax.random.key(0))
    state = restore_state(workdir, config, params, _optimizer(config))
    tokenizer = _load_vocabulary(workdir)
    return speech_from(config, tokenizer, graphdef, state.params), config, int(state.step)


def decoding(config: ml_collections.ConfigDict, *, beam_size: int | None = None,
             ctc_weight: float | None = None) -> dict:
    """``UniVoiceSpeech.transcribe``'s settings: ``config.decode``'s unless given (beam 0 = greedy; ctc_weight
    > 0: joint CTC/attention decoding, which needs a model trained with ``loss.ctc_weight`` > 0)."""
    beam = config.decode.beam_size if beam_size is None else beam_size
    weight = config.decode.get("ctc_weight", 0.0) if ctc_weight is None else ctc_weight
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"decode.ctc_weight must be in [0, 1], got {weight}")
    if weight and not config.loss.ctc_weight:
        raise ValueError("decode.ctc_weight > 0 decodes with the encoder's CTC, which this model was not trained "
                         "with (loss.ctc_weight = 0): set it to 0")
    return {"beam_size": beam or None, "ctc_weight": float(weight)}


def transcribe(workdir: str, files: list[str], *, beam_size: int | None = None,
               ctc_weight: float | None = None) -> list[str]:
    """One transcript per file, in order (files at any sample rate are resampled)."""
    speech, config, _ = load_speech(workdir)
    settings = decoding(config, beam_size=beam_size, ctc_weight=ctc_weight)
    waves = [audio.load_audio(path, sample_rate=speech.preset.sample_rate) for path in files]
    return speech.transcribe(waves, **settings)


def _vocode(mel: np.ndarray, config: ml_collections.ConfigDict) -> np.ndarray:
    waveform = audio.log_mel_to_audio(mel[None], config.data.preset, n_iter=config.synth.griffin_lim_iterations)
    return np.asarray(waveform[0])


def synthesize(workdir: str, texts: list[str], *, prompt_audio: str | None = None, prompt_text: str | None = None,
               seed: int | None = None) -> tuple[list[np.ndarray], int]:
    """(waveforms, sample rate) of ``texts`` in the voice of the ``prompt_audio`` file (with its
    transcript ``prompt_text``), Griffin-Lim on the model's mel."""
    speech, config, _ = load_speech(workdir)
    prompt = None if prompt_audio is None else audio.load_audio(prompt_audio, sample_rate=speech.preset.sample_rate)
    mels = speech.synthesize(texts, key=jax.random.key(seed or 0), prompt_audio=prompt, prompt_text=prompt_text)
    return [_vocode(mel, config) for mel in mels], speech.preset.sample_rate


def evaluate(workdir: str, *, split: str, asr_workdir: str | None = None, limit: int | None = None,
             beam_size: int | None = None, ctc_weight: float | None = None, data_dir: str | None = None) -> dict:
    """ASR CER of ``split`` (its first ``limit`` utterances, decoded as ``decoding`` says; with the encoder's
    CTC also that alone's, ``encoder_ctc_cer``), and TTS: each of them cloned from the next
    utterance of its speaker in the split (prompt audio and text; speakers with one utterance are
    left out), scored by the recognizer of ``asr_workdir`` (default ``config.eval.asr_workdir``) and
    by speaker similarity to the prompt (``_speaker_scores``, when ``eval.speaker_similarity``).
    ``data_dir``: another corpus than the model's (its ``split``, and its training voices among the
    candidates of speaker identification), e.g. one model's clones judged among another corpus's voices.
    Written to ``eval_<split>.json`` (``eval_<corpus folder>_<split>.json`` for another corpus), audio
    to the folder of that name."""
    speech, config, step = load_speech(workdir)
    settings = decoding(config, beam_size=beam_size, ctc_weight=ctc_weight)
    preset = speech.preset
    own_corpus = data_dir is None
    data_dir = config.data.dir if own_corpus else data_dir
    split_records = load_records(data_dir, split=split)
    records = split_records[: limit or None]
    waves = [_load_wave(r, preset) for r in records]
    references = [r["text"] for r in records]

    def error_rates_of(transcriber) -> dict:
        size = config.eval.batch_size
        return error_rates(references, [h for b in range(0, len(waves), size) for h in transcriber(waves[b:b + size])])

    started = time.time()
    asr = error_rates_of(functools.partial(speech.transcribe, **settings))
    result = {"split": split, "step": step, "utterances": len(records), "asr_cer": asr["cer"], "asr_wer": asr["wer"],
              "asr_seconds": time.time() - started, "asr_decoding": settings, "data_dir": data_dir}
    if config.loss.ctc_weight:  # what the encoder hears on its own (best-path CTC, no LLM)
        result["encoder_ctc_cer"] = error_rates_of(speech.transcribe_ctc)["cer"]
    name = f"eval_{split}" if own_corpus else f"eval_{os.path.basename(os.path.normpath(data_dir))}_{split}"
    out_dir = os.path.join(workdir, name)
    os.makedirs(out_dir, exist_ok=True)
    by_speaker: dict[str, list[int]] = {}
    for i, record in enumerate(split_records):
        by_speaker.setdefault(speaker_of(record), []).append(i)
    files, texts, trials = [], [], []
    key = jax.random.key(config.seed)
    for i, record in enumerate(records):
        same = by_speaker[speaker_of(record)]
        if len(same) < 2:
            continue  # no other clip of this speaker to prompt with
        prompt = split_records[same[(same.index(i) + 1) % len(same)]]
        [mel] = speech.synthesize([record["text"]], key=jax.random.fold_in(key, i),
                                  prompt_audio=_load_wave(prompt, preset), prompt_text=prompt["text"])  # fmt: skip
        path = os.path.join(out_dir, f"{record['id']}.wav")
        audio.save_audio(path, _vocode(mel, config), preset.sample_rate)
        files.append(path)
        texts.append(record["text"])
        trials.append((record, prompt))
    result["tts_utterances"] = len(files)
    asr_workdir = asr_workdir or config.eval.asr_workdir
    if files and asr_workdir and os.path.isfile(os.path.join(asr_workdir, "config.json")):
        recognizer = recipes.for_workdir(asr_workdir).require("transcribe")
        result["tts_asr_cer"] = error_rates(texts, recognizer(asr_workdir, files, beam_size=0))["cer"]
        result["asr_workdir"] = asr_workdir
    else:
        log.warning("no recognizer at %r: tts_asr_cer not measured", asr_workdir)
    if files and config.eval.speaker_similarity:
        train_records = load_records(data_dir, split=config.data.train_split)
        result.update(_speaker_scores(config, trials, files, train_records, split_records, preset))
    with open(f"{out_dir}.json", "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    return result


def _speaker_scores(config, trials: list[tuple[dict, dict]], files: list[str], train_records: list[dict],
                    split_records: list[dict], preset: audio.MelPreset) -> dict:
    """``eval.speaker.cloning_scores`` of the cloned files: each against its prompt, with the target's own
    recording as the ceiling and an utterance of the split's next voice as the floor, identified among
    every voice of ``train_records`` and of ``split_records`` (``eval.reference_utterances`` each)."""
    from jaxspeech.eval.speaker import cloning_scores

    references: dict[str, list[dict]] = {}
    for record in [*train_records, *split_records]:
        chosen = references.setdefault(speaker_of(record), [])
        if len(chosen) < config.eval.reference_utterances:
            chosen.append(record)
    voices = sorted({speaker_of(r) for r in split_records})
    if len(voices) < 2:
        log.warning("speaker similarity needs two voices in the split for its floor: not measured")
        return {}
    others = {v: next(r for r in split_records if speaker_of(r) == voices[(voices.index(v) + 1) % len(voices)])
              for v in voices}  # fmt: skip
    load = lambda record: _load_wave(record, preset)  # noqa: E731
    return cloning_scores(
        cloned=[audio.load_audio(f, sample_rate=preset.sample_rate) for f in files],
        prompts=[load(prompt) for _, prompt in trials], same_voice=[load(record) for record, _ in trials],
        other_voice=[load(others[speaker_of(record)]) for record, _ in trials],
        voices=[speaker_of(record) for record, _ in trials],
        references={v: [load(r) for r in rs] for v, rs in references.items()}, sample_rate=preset.sample_rate)


def _decoding_options(parser) -> None:
    recipes.add_beam_size(parser)
    parser.add_argument("--ctc-weight", type=float, default=None,
                        help="joint CTC/attention decoding's CTC weight, 0 = the LLM alone (default: the config's)")


def _evaluate_options(parser) -> None:
    parser.add_argument("--asr-workdir", default=None, help="recognizer for the TTS CER (default: the config's)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N utterances only")
    parser.add_argument("--data", dest="data_dir", default=None,
                        help="another corpus directory to evaluate on (default: the one the model trained on)")
    _decoding_options(parser)


def _synthesize_options(parser) -> None:
    parser.add_argument("--prompt-audio", default=None, help="a clip of the voice to clone (any sample rate)")
    parser.add_argument("--prompt-text", default=None, help="what the prompt clip says")
    parser.add_argument("--seed", type=int, default=None, help="noise seed (default: 0)")


RECIPE = recipes.register(recipes.Recipe(
    "univoice", train, evaluate=evaluate, transcribe=transcribe, synthesize=synthesize,
    options={"evaluate": _evaluate_options, "transcribe": _decoding_options, "synthesize": _synthesize_options}))
