"""Conformer-CTC character recognition: train, evaluate and transcribe from a workdir.

A workdir holds ``config.json`` (resolved config), ``vocab.json`` (tokenizer),
``checkpoints/`` (orbax), ``metrics.jsonl`` + TensorBoard events, ``data_stats.json``
(skips, padding) and ``eval_<split>.json``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxspeech.data.bucketing import make_buckets
from jaxspeech.data.manifest import SkipCounter
from jaxspeech.data.pipeline import SpeechBatches, SpeechDataset
from jaxspeech.data.readers import load_records
from jaxspeech.eval import error_rates
from jaxspeech.losses.ctc import ctc_min_frames
from jaxspeech.models import ctc_asr
from jaxspeech.samplers.ctc_decoding import beam_search_batch, greedy_decode
from jaxspeech.text import Tokenizer, normalize_for_asr
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
_VOCAB = "vocab.json"


def _labeler(tokenizer: Tokenizer):
    return lambda record: tokenizer.encode(normalize_for_asr(record["text"]))


def _alignable(model_config):
    """Predicate ``(input frames, label) -> bool``: can CTC align the label to the model's output frames?"""

    def alignable(frames: int, label: np.ndarray) -> bool:
        label = jnp.asarray(label)[None]
        return int(ctc_asr.output_length(model_config, frames)) >= int(ctc_min_frames(label, jnp.ones_like(label, bool))[0])

    return alignable


def _tokenizer(records, workdir) -> Tokenizer:
    return workdir_file(workdir, _VOCAB,
                        lambda: Tokenizer.from_texts((normalize_for_asr(r["text"]) for r in records), "chars"),
                        load=Tokenizer.load, save=lambda tokenizer, path: tokenizer.save(path))


class _Recognizer:
    """Decodes SpeechDatasets in batches; the forward pass is compiled once per bucket shape."""

    def __init__(self, config, tokenizer: Tokenizer, graphdef):
        self.config, self.tokenizer = config, tokenizer
        self._logits = jax.jit(functools.partial(ctc_asr.apply, graphdef))

    @classmethod
    def from_workdir(cls, workdir: str) -> tuple[_Recognizer, object, int]:
        """(recognizer, params, step) of the latest checkpoint of ``workdir`` (a corrupt latest falls back)."""
        config = read_saved_config(workdir)
        graphdef, params = ctc_asr.init(config.model, jax.random.key(0))
        state = restore_state(workdir, config, params, optimizer_from_config(config))
        return cls(config, Tokenizer.load(os.path.join(workdir, _VOCAB)), graphdef), state.params, int(state.step)

    def decode(self, params, dataset: SpeechDataset, *, beam_size: int) -> dict[int, str]:
        """Hypothesis text for every decodable record index of ``dataset``."""
        d = self.config.data
        buckets = make_buckets(dataset.lengths, max_frames=d.max_frames, num_buckets=d.num_buckets)
        batches = SpeechBatches(dataset, buckets, shuffle=False, num_threads=d.num_threads)
        texts = {}
        for _ in range(batches.batches_per_epoch):
            batch = next(batches)
            logits, mask = self._logits(params, batch["mel"], batch["mel_mask"])
            if beam_size > 0:
                lengths = np.asarray(mask.sum(axis=1))
                best = [beams[0][0] for beams in beam_search_batch(np.asarray(jax.nn.log_softmax(logits)), lengths,
                                                                    beam_size=beam_size)]
            else:
                ids, lengths = jax.device_get(greedy_decode(logits, mask))
                best = [row[:n] for row, n in zip(ids, lengths)]
            for index, hyp in zip(batch["index"], best):
                if index >= 0:
                    texts[int(index)] = self.tokenizer.decode(hyp)
        return texts


def _dataset(records, config, labeler=None, skips=None) -> SpeechDataset:
    d = config.data
    return SpeechDataset(records, preset=d.preset, labeler=labeler, skips=skips, cache=d.cache_features,
                         max_seconds=d.max_seconds if labeler else None)


def train(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Trains (or resumes) a recognizer in ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    skips = SkipCounter()
    records = load_records(config.data.dir, split=config.data.train_split, skips=skips)
    tokenizer = _tokenizer(records, workdir)
    config.model.vocab_size = tokenizer.vocab_size
    save_config(config, workdir)

    dataset = _dataset(records, config, _labeler(tokenizer), skips)
    dataset.keep(_alignable(config.model), "CTC alignment impossible: fewer output frames than labels + repeats")
    mesh = mesh_from_config(config)
    batches = bucketed_batches(config, dataset)
    write_data_stats(workdir, {**batches.describe(), "skips": dict(skips.counts)})

    optimizer = optimizer_from_config(config)
    graphdef, params = ctc_asr.init(config.model, jax.random.key(config.seed))
    step_fn, state = compile_recipe_step(ctc_asr.make_loss_fn(graphdef, config.model), optimizer,
                                         initial_state(config, params, optimizer), mesh, config)

    valid = _dataset(load_records(config.data.dir, split=config.data.eval_split), config)
    writer = MetricWriter(workdir)
    if jax.process_index() == 0:
        writer.image(0, "data/log_mel", plot_mel(valid.features(0)))

    recognizer = _Recognizer(config, tokenizer, graphdef)

    def evaluate_valid(state) -> dict[str, float]:
        hyps = recognizer.decode(state.params, valid, beam_size=0)
        return error_rates([valid.records[i]["text"] for i in sorted(hyps)], [hyps[i] for i in sorted(hyps)])

    train_in_workdir(config, workdir, state=state, step_fn=step_fn, batches=batches, mesh=mesh, writer=writer,
                     eval_fn=evaluate_valid, skips=skips)


def evaluate(workdir: str, *, split: str, beam_size: int | None = None) -> dict:
    """CER/WER of the latest checkpoint on ``split`` of the training corpus; also written to eval_<split>.json."""
    recognizer, params, step = _Recognizer.from_workdir(workdir)
    config = recognizer.config
    beam = config.decode.beam_size if beam_size is None else beam_size
    skips = SkipCounter()
    dataset = _dataset(load_records(config.data.dir, split=split, skips=skips), config, skips=skips)
    started = time.time()
    hyps = recognizer.decode(params, dataset, beam_size=beam)
    elapsed = time.time() - started
    missing = len(dataset) - len(hyps)
    order = sorted(hyps)
    result = error_rates([dataset.records[i]["text"] for i in order], [hyps[i] for i in order])
    audio_seconds = float(sum(dataset.lengths[i] for i in order)) * dataset.preset.hop_length / dataset.preset.sample_rate
    result.update(split=split, step=step, decoder=f"beam{beam}" if beam else "greedy",
                  skipped=skips.total + missing, rtf=elapsed / max(audio_seconds, 1e-9))
    with open(os.path.join(workdir, f"eval_{split}.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    return result


def transcribe(workdir: str, files: list[str], *, beam_size: int | None = None) -> list[str]:
    """One transcript per file, in order; a file that cannot be decoded raises, naming it."""
    recognizer, params, _ = _Recognizer.from_workdir(workdir)
    beam = recognizer.config.decode.beam_size if beam_size is None else beam_size
    skips = SkipCounter()
    records = [{"id": path, "audio": path, "text": ""} for path in files]
    dataset = _dataset(records, recognizer.config, skips=skips)
    hyps = recognizer.decode(params, dataset, beam_size=beam)
    if len(hyps) != len(files):
        raise ValueError(f"could not transcribe: {skips.summary()}")
    return [hyps[i] for i in range(len(files))]


RECIPE = recipes.register(recipes.Recipe("ctc_asr", train, evaluate=evaluate, transcribe=transcribe,
                                         options={"evaluate": recipes.add_beam_size,
                                                  "transcribe": recipes.add_beam_size}))
