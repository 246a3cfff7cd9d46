"""Neural vocoders (``jaxspeech.models.neural_vocoder``: the iSTFT vocoder or HiFi-GAN, with or
without discriminators): train on random segments, evaluate, vocode from a workdir.

With ``model.adversarial.discriminators`` set, the run's state is a ``GanState`` (generator and
discriminators, each with its optimizer state) stepped by ``make_gan_train_step``; checkpoints,
resumption and evaluation work as for the generator alone.

A workdir holds ``config.json`` (resolved config), ``checkpoints/`` (orbax), ``metrics.jsonl``
+ TensorBoard events (with a vocoded validation segment at each evaluation), ``data_stats.json``
and ``eval_<split>.json``. ``vocode(workdir)`` gives the trained log-mel -> waveform function
other recipes (text-to-speech) call.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxspeech import audio
from jaxspeech.data.bucketing import make_buckets
from jaxspeech.data.manifest import SkipCounter
from jaxspeech.data.pipeline import SpeechBatches, SpeechDataset
from jaxspeech.data.readers import load_records
from jaxspeech.data.segments import SegmentBatches
from jaxspeech.eval.mcd import mel_cepstral_distortion
from jaxspeech.losses.stft import mel_l1_loss
from jaxspeech.models import neural_vocoder
from jaxspeech.train import recipes
from jaxspeech.train.checkpoint import restore_latest
from jaxspeech.train.config import read_saved_config, save_config
from jaxspeech.train.gan_step import GanState, compile_recipe_gan_step
from jaxspeech.train.loop import State, train_in_workdir
from jaxspeech.train.mesh import check_row_multiple, make_mesh
from jaxspeech.train.metrics import MetricWriter, write_data_stats
from jaxspeech.train.run_setup import initial_state, optimizer_from_config
from jaxspeech.train.step import compile_recipe_step

log = logging.getLogger(__name__)


def _dataset(config, split: str, skips: SkipCounter) -> SpeechDataset:
    records = load_records(config.data.dir, split=split, skips=skips)
    return SpeechDataset(records, preset=config.model.preset, labeler=None, skips=skips, cache=False)


def _segments(config, dataset: SpeechDataset, *, seed: int, **process) -> SegmentBatches:
    d = config.data
    return SegmentBatches(dataset, segment_frames=d.segment_frames, batch_size=d.batch_size, seed=seed,
                          num_threads=d.num_threads, **process)


class _Networks(NamedTuple):
    generator: nnx.GraphDef
    discriminators: nnx.GraphDef | None  # None: no adversarial training
    state: State  # step 0: the generator's TrainState, or a GanState
    optimizer: optax.GradientTransformation  # each network's


def _networks(config: ml_collections.ConfigDict) -> _Networks:
    """The run's networks and step-0 state: the generator from ``key(seed)``, the discriminators
    (when configured) from ``fold_in(key(seed), 1)``; one optimizer setting for both."""
    m, key = config.model, jax.random.key(config.seed)
    optimizer = optimizer_from_config(config)
    generator, params = neural_vocoder.init_generator(m, key)
    state = initial_state(config, params, optimizer)
    if not neural_vocoder.adversarial(m):
        return _Networks(generator, None, state, optimizer)
    discriminators, d_params = neural_vocoder.init_discriminators(m, jax.random.fold_in(key, 1))
    state = GanState(generator=state, discriminator=initial_state(config, d_params, optimizer))
    return _Networks(generator, discriminators, state, optimizer)


def _generator_params(state: State) -> nnx.State:
    return state.generator.params if isinstance(state, GanState) else state.params


def train(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Trains (or resumes) a vocoder in ``workdir`` (``model.n_mels`` is the preset's)."""
    os.makedirs(workdir, exist_ok=True)
    config.model.n_mels = audio.get_preset(config.model.preset).n_mels  # the mel bins, whatever the preset
    save_config(config, workdir)
    skips = SkipCounter()
    dataset = _dataset(config, config.data.train_split, skips)
    mesh = make_mesh({"data": config.mesh.data, "fsdp": config.mesh.fsdp})
    check_row_multiple(config.data.batch_size, mesh, config.train.accum_steps)  # fixed-size batches
    batches = _segments(config, dataset, seed=config.seed, process_index=jax.process_index(),
                        process_count=jax.process_count())
    write_data_stats(workdir, {
        "train_utterances": len(dataset), "segment_samples": batches.segment_samples,
        "train_seconds": float(dataset.lengths.sum()) * dataset.preset.hop_length / dataset.preset.sample_rate,
        "skips": dict(skips.counts)})

    nets = _networks(config)
    loss_fn = neural_vocoder.make_loss_fn(nets.generator, config.model)
    if nets.discriminators is None:
        step_fn, state = compile_recipe_step(loss_fn, nets.optimizer, nets.state, mesh, config)
    else:
        losses = neural_vocoder.make_gan_losses(nets.generator, nets.discriminators, config.model)
        step_fn, state = compile_recipe_gan_step(*losses, nets.optimizer, nets.state, mesh, config)

    # A fixed set of validation segments: the eval loss is comparable over steps.
    valid = _segments(config, _dataset(config, config.data.eval_split, SkipCounter()), seed=config.seed)
    valid_batches = [{k: v for k, v in valid.batch(b).items() if k != "index"}
                     for b in range(config.train.eval_batches)]
    eval_loss = jax.jit(loss_fn)
    vocode_batch = jax.jit(functools.partial(neural_vocoder.generator_apply(config.model), nets.generator))
    writer = MetricWriter(workdir)

    def evaluate_valid(state) -> dict[str, float]:
        params = _generator_params(state)
        metrics = [jax.device_get(eval_loss(params, batch, state.rng)[1]) for batch in valid_batches]
        first = valid_batches[0]
        waveform = vocode_batch(params, first["mel"][:1], first["mel_mask"][:1])
        writer.audio(int(state.step), "valid/vocoded", np.asarray(waveform[0]), dataset.preset.sample_rate)
        return {name: float(np.mean([m[name] for m in metrics])) for name in metrics[0]}

    train_in_workdir(config, workdir, state=state, step_fn=step_fn, batches=batches, mesh=mesh, writer=writer,
                     eval_fn=evaluate_valid, skips=skips)


def _restore(workdir: str):
    """(config, generator graphdef, generator params, step) of the latest readable checkpoint of ``workdir``."""
    config = read_saved_config(workdir)
    nets = _networks(config)
    state = restore_latest(workdir, nets.state)
    return config, nets.generator, _generator_params(state), int(state.step)


def vocode(workdir: str) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    """The trained vocoder of ``workdir`` as ``fn(mel, mel_mask=None) -> audio``
    (``neural_vocoder.mel_to_audio_fn``: log-mels of the workdir's preset, ``[T,F]`` or ``[B,T,F]``)."""
    config, graphdef, params, _ = _restore(workdir)
    apply = neural_vocoder.generator_apply(config.model)
    forward = jax.jit(lambda mel, mask: apply(graphdef, params, mel, mask))
    return neural_vocoder.mel_to_audio_fn(forward, n_mels=config.model.n_mels,
                                          hop=neural_vocoder.hop_length(config.model))


def evaluate(workdir: str, *, split: str) -> dict:
    """Vocodes every utterance of ``split`` from its reference log-mel; also written to eval_<split>.json.

    Result: ``mcd_db`` (DTW-aligned mel-cepstral distortion against the reference waveform,
    mean over utterances), ``mel_l1`` (log-mel L1), ``rtf`` (vocoding seconds per second of
    audio, compiled shapes only), ``utterances``, ``skipped``, ``step``.
    """
    config, graphdef, params, step = _restore(workdir)
    skips = SkipCounter()
    dataset = SpeechDataset(load_records(config.data.dir, split=split, skips=skips), preset=config.model.preset,
                            labeler=None, skips=skips, cache=False)
    d = config.data
    buckets = make_buckets(dataset.lengths, max_frames=d.eval_max_frames, num_buckets=d.eval_num_buckets)
    loader = SpeechBatches(dataset, buckets, shuffle=False, num_threads=d.num_threads)
    batches = [next(loader) for _ in range(loader.batches_per_epoch)]
    forward = jax.jit(functools.partial(neural_vocoder.generator_apply(config.model), graphdef))
    for shape in {b["mel"].shape for b in batches}:  # compile outside the timed passes
        jax.block_until_ready(forward(params, np.zeros(shape, np.float32), np.ones(shape[:2], bool)))
    hop, preset = dataset.preset.hop_length, dataset.preset
    mcd, mel_l1, seconds, vocoded_seconds = [], [], 0.0, 0.0
    for batch in batches:
        started = time.perf_counter()
        waveforms = np.asarray(jax.block_until_ready(forward(params, batch["mel"], batch["mel_mask"])))
        seconds += time.perf_counter() - started
        for row, index in enumerate(batch["index"]):
            if index < 0:
                continue
            samples = int(dataset.lengths[index]) * hop
            reference = audio.load_audio(dataset.records[index]["audio"], sample_rate=preset.sample_rate)[:samples]
            estimate = waveforms[row, :samples]
            vocoded_seconds += samples / preset.sample_rate
            mcd.append(mel_cepstral_distortion(estimate, reference, preset=preset))
            mask = np.ones((1, samples), bool)
            mel_l1.append(float(mel_l1_loss(estimate[None], reference[None], mask, preset=preset)[0]))
    if not mcd:
        raise ValueError(f"no utterance of split {split!r} could be vocoded ({skips.summary()})")
    result = {"split": split, "step": step, "utterances": len(mcd), "skipped": skips.total + len(dataset) - len(mcd),
              "mcd_db": float(np.mean(mcd)), "mel_l1": float(np.mean(mel_l1)),
              "rtf": seconds / max(vocoded_seconds, 1e-9)}
    with open(os.path.join(workdir, f"eval_{split}.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    return result


RECIPE = recipes.register(recipes.Recipe("vocoder", train, evaluate=evaluate))
