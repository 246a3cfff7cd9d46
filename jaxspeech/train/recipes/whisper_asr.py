"""Whisper-architecture recognizer: train, evaluate and transcribe from a workdir; sparse fine-tuning.

Model: ``jaxspeech.models.whisper`` built from ``config.model`` (from scratch: any depth and
width, e.g. an encoder-heavy/decoder-light one), or imported from ``config.model.checkpoint``
(a ``transformers`` Whisper directory with its tokenizer files; its architecture then wins).
Either way the encoder runs on each length bucket's frames instead of Whisper's fixed 30 s:
``model.max_source_positions`` bounds the input (an imported position table is sliced to it).

Vocabulary: from scratch, the training split's characters (``vocab.json``; id 0 pads) then eot
and sot, with the decoder prefix ``sot``. From a checkpoint, its tokenizer and the English
transcribe prefix (``decoder_prefix``). Targets are ``normalize_for_asr`` text.

Teacher forcing: decoder input = prefix + text ``[B, P+L]``; the last ``L+1`` logits predict
text + eot. Loss: cross-entropy, or EMO combined with it (``config.loss.kind = "emo"``), plus
``config.loss.ctc_weight`` x a CTC auxiliary loss on the encoder (joint CTC-attention training,
Kim et al. 2017): the encoder's final states projected on the tied token embeddings
(``whisper.encoder_token_logits``; no parameters outside Whisper's tree), blank = eot (never
a text id), per target token. It only shapes training; decoding stays the attention decoder's.
Regularisation: ``model.dropout`` and SpecAugment on the training log-mels (``model.specaugment``:
the fields of ``jaxspeech.data.specaugment.spec_augment``; zero masks = off).

Sparse fine-tuning (``config.sparsity.target > 0``): the student starts from the latest
checkpoint of ``sparsity.dense_workdir`` (whose model config and vocabulary are adopted), the
optimizer is wrapped in gradual magnitude pruning with the cubic schedule (pruned weights stay
exactly 0), and ``sparsity.distill = "squarehead"`` adds SquareHead over every encoder and
decoder block against the frozen dense model (plus logit KL with ``sparsity.kl_weight``).

A workdir holds ``config.json``, ``vocab.json`` (character vocabularies), ``checkpoints/``,
``metrics.jsonl`` + TensorBoard events, ``data_stats.json`` (skips, padding) and ``eval_<split>.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxspeech.audio import get_preset
from jaxspeech.data.bucketing import make_buckets, round_up
from jaxspeech.data.manifest import SkipCounter
from jaxspeech.data.pipeline import SpeechBatches, SpeechDataset
from jaxspeech.data.readers import load_records
from jaxspeech.data.specaugment import spec_augment
from jaxspeech.eval import error_rates
from jaxspeech.losses.ctc import ctc_token_mean
from jaxspeech.losses.emo import emo_loss, token_cross_entropy
from jaxspeech.losses.squarehead import distillation_kl, squarehead_layer_losses
from jaxspeech.models import whisper
from jaxspeech.models.hashed_graph import hashed
from jaxspeech.models.whisper.files import load_tokenizer, tokenizer_special_tokens
from jaxspeech.models.whisper.model import HiddenStates
from jaxspeech.sparsity import gradual_magnitude_pruning, param_path, pruning_masks, pruning_schedule, sparsity_of
from jaxspeech.text import Tokenizer, normalize_for_asr
from jaxspeech.train import recipes
from jaxspeech.train.config import read_saved_config, save_config
from jaxspeech.train.loop import train_in_workdir
from jaxspeech.train.metrics import MetricWriter, write_data_stats
from jaxspeech.train.run_setup import (
    bucketed_batches,
    initial_state,
    mesh_from_config,
    optimizer_from_config,
    restore_state,
)
from jaxspeech.train.state import TrainState
from jaxspeech.train.step import compile_recipe_step

log = logging.getLogger(__name__)
_VOCAB = "vocab.json"
_LENGTH_MULTIPLE = 16  # bucket frames and label lengths are padded to multiples of this


@dataclasses.dataclass(frozen=True)
class _Vocabulary:
    """Text <-> ids around the decoder's special tokens.

    encode: text -> text ids int32 [L]; decode: ids -> text (special ids dropped); prefix: the
    forced decoder prefix [P]; eot: end of text (every text id is below it); suppress: ids never
    generated (specials other than eot, padding).
    """

    encode: Callable[[str], np.ndarray]
    decode: Callable[[list[int]], str]
    prefix: tuple[int, ...]
    eot: int
    suppress: tuple[int, ...]


def _character_vocabulary(tokenizer: Tokenizer) -> _Vocabulary:
    eot = tokenizer.vocab_size
    return _Vocabulary(encode=lambda text: tokenizer.encode(normalize_for_asr(text)), decode=tokenizer.decode,
                       prefix=(eot + 1,), eot=eot, suppress=(0, eot + 1))


def _checkpoint_vocabulary(checkpoint: str, config: whisper.WhisperConfig) -> _Vocabulary:
    tokenizer = load_tokenizer(checkpoint)
    tokens = tokenizer_special_tokens(config, tokenizer, checkpoint)
    prefix = whisper.decoder_prefix(tokens, language="en" if tokens.multilingual else None)

    def encode(text: str) -> np.ndarray:
        ids = np.asarray(tokenizer.encode(" " + normalize_for_asr(text), add_special_tokens=False), np.int32)
        if np.any(ids >= tokens.eot):  # unknown symbols come back as special tokens
            raise ValueError(f"the checkpoint's tokenizer cannot encode {text!r}")
        return ids

    def decode(ids: list[int]) -> str:
        return tokenizer.decode([i for i in ids if i < tokens.eot], skip_special_tokens=True).strip()

    suppress = sorted(set(config.suppress_tokens) | set(range(tokens.sot, config.vocab_size)))
    return _Vocabulary(encode=encode, decode=decode, prefix=prefix, eot=tokens.eot, suppress=tuple(suppress))


def _checkpoint_architecture(model: ml_collections.ConfigDict) -> whisper.WhisperConfig:
    """``model.checkpoint``'s architecture with ``model.dropout``; encoder positions capped by the config."""
    imported = whisper.read_transformers_config(model.checkpoint)
    return dataclasses.replace(imported, dropout=model.dropout,
                               max_source_positions=min(model.max_source_positions, imported.max_source_positions))


def _scratch_architecture(model: ml_collections.ConfigDict, num_characters: int) -> whisper.WhisperConfig:
    """The architecture of ``model`` over ``num_characters`` character ids (padding included), then eot and sot."""
    eot, ffn_dim = num_characters, model.ffn_mult * model.d_model
    return whisper.WhisperConfig(
        n_mels=get_preset(model.preset).n_mels, vocab_size=eot + 2, d_model=model.d_model,
        encoder_layers=model.encoder_layers, encoder_heads=model.num_heads, encoder_ffn_dim=ffn_dim,
        decoder_layers=model.decoder_layers, decoder_heads=model.num_heads, decoder_ffn_dim=ffn_dim,
        eos_token_id=eot, decoder_start_token_id=eot + 1, pad_token_id=0, max_source_positions=model.max_source_positions,
        max_target_positions=model.max_target_positions, dropout=model.dropout)  # fmt: skip


def _model(config: ml_collections.ConfigDict, workdir: str, records=None) -> tuple[_Vocabulary, whisper.WhisperConfig]:
    """(vocabulary, architecture) of a run. A character vocabulary is read from ``workdir``, or
    built from ``records`` and saved there when the workdir has none yet."""
    model = config.model
    if model.checkpoint:
        architecture = _checkpoint_architecture(model)
        return _checkpoint_vocabulary(model.checkpoint, architecture), architecture
    path = os.path.join(workdir, _VOCAB)
    if not os.path.exists(path):  # resuming must keep the vocabulary under the checkpoint
        if records is None:
            raise FileNotFoundError(f"{workdir} holds no {_VOCAB}: is it a whisper_asr workdir?")
        Tokenizer.from_texts((normalize_for_asr(r["text"]) for r in records), "chars").save(path)
    tokenizer = Tokenizer.load(path)
    return _character_vocabulary(tokenizer), _scratch_architecture(model, tokenizer.vocab_size)


def _decays(params):
    """Weight-decay mask: everything but the encoder's fixed sinusoid table."""
    return jax.tree_util.tree_map_with_path(lambda path, _: param_path(path) != "encoder/embed_positions", params)


def _optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    s = config.sparsity
    dense = optimizer_from_config(config, decay_mask=_decays)
    if not s.target:
        return dense
    pruning = pruning_schedule(final_sparsity=s.target, begin_step=s.begin_step, end_step=s.end_step,
                               frequency=s.frequency)
    return gradual_magnitude_pruning(dense, pruning, scope=s.scope)  # outermost: pruned weights land on 0


class _Run(NamedTuple):
    """A restored workdir: its config, vocabulary, architecture, graphdef and latest train state."""

    config: ml_collections.ConfigDict
    vocabulary: _Vocabulary
    architecture: whisper.WhisperConfig
    graphdef: Any
    state: TrainState


def _restore(workdir: str) -> _Run:
    """The latest readable checkpoint of ``workdir`` with what decoding it needs."""
    config = read_saved_config(workdir)
    vocabulary, architecture = _model(config, workdir)
    graphdef, params = whisper.init(architecture, jax.random.key(0))
    state = restore_state(workdir, config, params, _optimizer(config))
    return _Run(config, vocabulary, architecture, graphdef, state)


def _initial_params(config, architecture: whisper.WhisperConfig, dense: _Run | None):
    """Step-0 parameters: the dense run's, the imported checkpoint's (positions sliced), or random."""
    if dense is not None:
        return dense.state.params
    if config.model.checkpoint:
        _, _, params = whisper.import_transformers_checkpoint(config.model.checkpoint)
        table = params["encoder"]["embed_positions"]
        params["encoder"]["embed_positions"] = table.replace(table[...][: architecture.max_source_positions])
        return params
    return whisper.init(architecture, jax.random.key(config.seed))[1]


def _teacher_forcing(batch, prefix: jax.Array, eot: int):
    """Decoder input ids [B, P+L], targets [B, L+1] (text then eot), target mask [B, L+1] and the
    mask of decoder positions that feed a target [B, P+L]. Filler rows (no tokens) are masked out."""
    tokens, token_mask = batch["tokens"], batch["token_mask"]
    rows, length = tokens.shape
    lengths = token_mask.sum(axis=1)
    real = token_mask.any(axis=1)[:, None]
    inputs = jnp.concatenate([jnp.broadcast_to(prefix, (rows, prefix.shape[0])), tokens], axis=1)
    position = jnp.arange(length + 1)[None, :]
    padded = jnp.pad(jnp.where(token_mask, tokens, 0), ((0, 0), (0, 1)))
    targets = jnp.where(position == lengths[:, None], eot, padded)
    target_mask = (position <= lengths[:, None]) & real
    decoder_mask = (jnp.arange(inputs.shape[1])[None, :] < prefix.shape[0] + lengths[:, None]) & real
    return inputs, targets, target_mask, decoder_mask


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(jnp.sum(mask, dtype=x.dtype), 1.0)


def _task_loss(loss_config, logits, targets, mask, embedding) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Cross-entropy, or EMO combined with it, over the target tokens."""
    if loss_config.kind == "emo":
        return emo_loss(logits, targets, mask, embedding, combine=loss_config.emo_combine)
    if loss_config.kind != "ce":
        raise ValueError(f"config.loss.kind must be 'ce' or 'emo', got {loss_config.kind!r}")
    ce = _masked_mean(token_cross_entropy(logits, targets), mask)
    return ce, {"ce": ce}


def _encoder_ctc(graphdef, params, hidden: HiddenStates, batch, blank: int) -> jax.Array:
    """CTC of the text tokens on the encoder's per-frame token logits, summed over the utterances
    it can align (others are counted out) and divided by their tokens."""
    logits = whisper.encoder_token_logits(graphdef, params, hidden)
    return ctc_token_mean(logits, hidden.encoder_mask, batch["tokens"], batch["token_mask"], blank_id=blank)


def _squarehead(sparsity, student: HiddenStates, teacher: HiddenStates, decoder_mask, student_logits, teacher_logits,
                logit_mask) -> tuple[jax.Array, dict[str, jax.Array]]:
    """squarehead_weight * sum over encoder and decoder blocks of SquareHead (+ kl_weight * KL)."""
    encoder = jnp.sum(squarehead_layer_losses(student.encoder, teacher.encoder, student.encoder_mask))
    decoder = jnp.sum(squarehead_layer_losses(student.decoder, teacher.decoder, decoder_mask))
    kl = distillation_kl(student_logits, teacher_logits, logit_mask) if sparsity.kl_weight else jnp.zeros([])
    extra = sparsity.squarehead_weight * (encoder + decoder) + sparsity.kl_weight * kl
    return extra, {"squarehead/encoder": encoder, "squarehead/decoder": decoder, "kl": kl}


def make_loss_fn(config, graphdef, vocabulary: _Vocabulary, teacher_params=None):
    """``loss_fn(params, batch, key) -> (loss, metrics)`` of the pipeline's batches (mel [B,T,F],
    mel_mask [B,T], tokens [B,L], token_mask [B,L]). With ``teacher_params`` (frozen, closed
    over) the loss adds SquareHead distillation as set in ``config.sparsity``. ``key`` splits into
    the SpecAugment key and the dropout key; student and teacher see the same augmented features."""
    prefix = jnp.asarray(vocabulary.prefix, jnp.int32)
    augment = config.model.specaugment
    ctc_weight = config.loss.ctc_weight
    first = prefix.shape[0] - 1  # the logit at the last prefix position predicts the first text token

    def forward(params, batch, inputs, key):
        features = jnp.swapaxes(batch["mel"], 1, 2)
        logits, hidden = whisper.apply(graphdef, params, features, inputs, frame_mask=batch["mel_mask"], key=key,
                                       output_hidden_states=True)
        return logits[:, first:], hidden

    def loss_fn(params, batch, key):
        k_augment, k_dropout = jax.random.split(key)
        batch = {**batch, "mel": spec_augment(batch["mel"], batch["mel_mask"], k_augment, **augment)}
        inputs, targets, target_mask, decoder_mask = _teacher_forcing(batch, prefix, vocabulary.eot)
        logits, hidden = forward(params, batch, inputs, k_dropout)
        embedding = params["decoder"]["embed_tokens"]["embedding"][...]
        loss, metrics = _task_loss(config.loss, logits, targets, target_mask, embedding)
        if ctc_weight:
            metrics["ctc"] = _encoder_ctc(graphdef, params, hidden, batch, vocabulary.eot)
            loss = loss + ctc_weight * metrics["ctc"]
        if teacher_params is None:
            return loss, metrics
        teacher_logits, teacher_hidden = forward(jax.lax.stop_gradient(teacher_params), batch, inputs, None)
        extra, distill = _squarehead(config.sparsity, hidden, teacher_hidden, decoder_mask, logits, teacher_logits,
                                     target_mask)
        return loss + extra, {**metrics, "task": loss, **distill}

    return loss_fn


class _Recognizer:
    """Decodes SpeechDatasets in length buckets with the KV-cache ``whisper.generate`` (one compile per shape)."""

    def __init__(self, config, vocabulary: _Vocabulary, architecture: whisper.WhisperConfig, graphdef):
        self.config, self.vocabulary, self.architecture = config, vocabulary, architecture
        self.graphdef = hashed(graphdef)  # whisper.generate's static argument, hashed once
        room = architecture.max_target_positions - len(vocabulary.prefix)
        self.max_new_tokens = min(config.decode.max_new_tokens, room)

    def decode(self, params, dataset: SpeechDataset, *, beam_size: int) -> dict[int, str]:
        """Hypothesis text for every decodable record index of ``dataset``; beam_size 0 = greedy."""
        d = self.config.data
        buckets = make_buckets(dataset.lengths, max_frames=d.max_frames, num_buckets=d.num_buckets,
                               length_multiple=_LENGTH_MULTIPLE)
        batches = SpeechBatches(dataset, buckets, shuffle=False, num_threads=d.num_threads)
        texts = {}
        for _ in range(batches.batches_per_epoch):
            batch = next(batches)
            decoded = whisper.generate(
                self.graphdef, params, self.architecture, jnp.swapaxes(batch["mel"], 1, 2), self.vocabulary.prefix,
                max_new_tokens=self.max_new_tokens, beam_size=beam_size or None,
                suppress_tokens=self.vocabulary.suppress, frame_mask=jnp.asarray(batch["mel_mask"]))  # fmt: skip
            ids, lengths = jax.device_get((decoded.tokens, decoded.lengths))
            for index, row, n in zip(batch["index"], ids, lengths):
                if index >= 0:
                    texts[int(index)] = self.vocabulary.decode([int(i) for i in row[:n]])
        return texts


def _fits(architecture: whisper.WhisperConfig, prefix_length: int):
    """Predicate ``(frames, label) -> bool``: do the padded features and prefix + label + eot fit the model?"""

    def fits(frames: int, label: np.ndarray) -> bool:
        return (round_up(frames, _LENGTH_MULTIPLE) <= architecture.max_frames
                and prefix_length + round_up(len(label), _LENGTH_MULTIPLE) + 1 <= architecture.max_target_positions)

    return fits


def _dataset(records, config, architecture, vocabulary: _Vocabulary, *, labeled: bool, skips: SkipCounter):
    d = config.data
    labeler = (lambda record: vocabulary.encode(record["text"])) if labeled else None
    dataset = SpeechDataset(records, preset=config.model.preset, labeler=labeler, skips=skips,
                            cache=d.cache_features, max_seconds=d.max_seconds if labeled else None)
    dataset.keep(_fits(architecture, len(vocabulary.prefix)),
                 f"longer than the model's {architecture.max_frames} frames or {architecture.max_target_positions} tokens")
    return dataset


def _dense_run(config: ml_collections.ConfigDict, workdir: str) -> _Run | None:
    """For sparse fine-tuning: the dense run, whose model config and vocabulary ``config`` adopts."""
    s = config.sparsity
    if not s.target:
        return None
    if s.distill not in ("none", "squarehead"):
        raise ValueError(f"config.sparsity.distill must be 'none' or 'squarehead', got {s.distill!r}")
    if not s.dense_workdir:
        raise ValueError("sparse fine-tuning (config.sparsity.target > 0) needs config.sparsity.dense_workdir")
    dense = _restore(s.dense_workdir)
    config.model = dense.config.model
    vocab = os.path.join(s.dense_workdir, _VOCAB)
    if os.path.exists(vocab) and not os.path.exists(os.path.join(workdir, _VOCAB)):
        shutil.copy(vocab, workdir)
    log.info("sparse fine-tuning from %s (step %d) to sparsity %.2f, distillation %s", s.dense_workdir,
             int(dense.state.step), s.target, s.distill)
    return dense


def train(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Trains (or resumes) a Whisper-architecture recognizer in ``workdir`` (sparse when configured)."""
    os.makedirs(workdir, exist_ok=True)
    skips = SkipCounter()
    records = load_records(config.data.dir, split=config.data.train_split, skips=skips)
    dense = _dense_run(config, workdir)
    vocabulary, architecture = _model(config, workdir, records)
    save_config(config, workdir)

    dataset = _dataset(records, config, architecture, vocabulary, labeled=True, skips=skips)
    mesh = mesh_from_config(config)
    batches = bucketed_batches(config, dataset, length_multiple=_LENGTH_MULTIPLE, label_multiple=_LENGTH_MULTIPLE)
    write_data_stats(workdir, {**batches.describe(), "skips": dict(skips.counts)})

    optimizer = _optimizer(config)
    graphdef, _ = whisper.abstract_init(architecture)
    state = initial_state(config, _initial_params(config, architecture, dense), optimizer)
    teacher = dense.state.params if dense is not None and config.sparsity.distill == "squarehead" else None
    step_fn, state = compile_recipe_step(make_loss_fn(config, graphdef, vocabulary, teacher), optimizer, state, mesh,
                                         config)

    valid = _dataset(load_records(config.data.dir, split=config.data.eval_split), config, architecture, vocabulary,
                     labeled=False, skips=SkipCounter())
    recognizer = _Recognizer(config, vocabulary, architecture, graphdef)

    def evaluate_valid(state) -> dict[str, float]:
        hyps = recognizer.decode(state.params, valid, beam_size=0)
        return error_rates([valid.records[i]["text"] for i in sorted(hyps)], [hyps[i] for i in sorted(hyps)])

    train_in_workdir(config, workdir, state=state, step_fn=step_fn, batches=batches, mesh=mesh,
                     writer=MetricWriter(workdir), eval_fn=evaluate_valid, skips=skips)


def evaluate(workdir: str, *, split: str, beam_size: int | None = None) -> dict:
    """CER/WER of the latest checkpoint on ``split`` of the training corpus (and the sparsity of a
    sparse run); also written to eval_<split>.json."""
    run = _restore(workdir)
    config = run.config
    beam = config.decode.beam_size if beam_size is None else beam_size
    skips = SkipCounter()
    dataset = _dataset(load_records(config.data.dir, split=split, skips=skips), config, run.architecture,
                       run.vocabulary, labeled=False, skips=skips)
    recognizer = _Recognizer(config, run.vocabulary, run.architecture, run.graphdef)
    started = time.time()
    hyps = recognizer.decode(run.state.params, dataset, beam_size=beam)
    elapsed = time.time() - started
    order = sorted(hyps)
    result = error_rates([dataset.records[i]["text"] for i in order], [hyps[i] for i in order])
    audio_seconds = float(sum(dataset.lengths[i] for i in order)) * dataset.preset.hop_length / dataset.preset.sample_rate
    result.update(split=split, step=int(run.state.step), decoder=f"beam{beam}" if beam else "greedy",
                  skipped=skips.total + len(dataset) - len(hyps), rtf=elapsed / max(audio_seconds, 1e-9))
    if config.sparsity.target:
        sparsity = sparsity_of(run.state.params, pruning_masks(run.state.opt_state))
        result["sparsity"] = float(sparsity["global"])
    with open(os.path.join(workdir, f"eval_{split}.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    return result


def transcribe(workdir: str, files: list[str], *, beam_size: int | None = None) -> list[str]:
    """One transcript per file, in order; a file that cannot be decoded raises, naming it."""
    run = _restore(workdir)
    beam = run.config.decode.beam_size if beam_size is None else beam_size
    skips = SkipCounter()
    records = [{"id": path, "audio": path, "text": ""} for path in files]
    dataset = _dataset(records, run.config, run.architecture, run.vocabulary, labeled=False, skips=skips)
    hyps = _Recognizer(run.config, run.vocabulary, run.architecture, run.graphdef).decode(
        run.state.params, dataset, beam_size=beam)
    if len(hyps) != len(files):
        raise ValueError(f"could not transcribe: {skips.summary()}")
    return [hyps[i] for i in range(len(files))]


RECIPE = recipes.register(recipes.Recipe("whisper_asr", train, evaluate=evaluate, transcribe=transcribe,
                                         options={"evaluate": recipes.add_beam_size,
                                                  "transcribe": recipes.add_beam_size}))
