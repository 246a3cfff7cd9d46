"""The acoustic model's training loss over the batch contract of ``jaxspeech.models.tts``:
duration + prior (Matcha) + the decoder objective's loss + the prosody terms."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.losses.duration import duration_loss, prior_loss
from jaxspeech.objectives import Network, training_context
from jaxspeech.models.tts.conv_stack import masked
from jaxspeech.models.tts.decoder import null_condition, reads_pitch
from jaxspeech.models.tts.encoder import align
from jaxspeech.models.tts.model import as_config, decoder_network, objective_of
from jaxspeech.models.tts.prosody import (
    boundaries_of,
    contour_reconstruction,
    intonation_terms,
    pitch_condition,
    pitch_inputs,
    pitch_targets,
    pitch_terms,
)

Batch = Mapping[str, jax.Array]


def random_segment(key: jax.Array, arrays: list[jax.Array], mel_mask: jax.Array, frames: int) -> list[jax.Array]:
    """The same random window of ``frames`` frames from each row of every [B,T,...] array (Matcha
    out_size): start ~ U{0..max(len - frames, 0)}."""
    lengths = jnp.sum(mel_mask, axis=1)
    starts = jax.random.randint(key, lengths.shape, 0, jnp.maximum(lengths - frames, 0) + 1)
    cut = jax.vmap(lambda a, s: jax.lax.dynamic_slice_in_dim(a, s, frames, axis=0))
    return [cut(a, starts) for a in arrays]


def _drop_condition(key: jax.Array, cond: dict, null: dict, prob: float) -> dict:
    """Replaces the condition of a ``prob`` share of rows by the null condition (CFG training)."""
    drop = jax.random.uniform(key, cond["speaker"].shape) < prob
    return {name: value if name == "mask" else
            jnp.where(drop.reshape(-1, *([1] * (value.ndim - 1))), null[name], value)
            for name, value in cond.items()}


def make_loss_fn(
    graphdef: nnx.GraphDef, config: Mapping[str, Any], *, train: bool = True, total_steps: int | None = None,
    teacher: Network | None = None,
) -> Callable[..., tuple[jax.Array, dict[str, jax.Array]]]:
    """loss_fn(params, batch, key, progress=None) -> (loss, metrics).

    loss = duration + prior (Matcha, unit weights) + the decoder objective's loss + intonation
    cross-entropy (+ pitch_mse + voicing_bce with pitch.enabled) (+ intonation.reconstruction_weight x
    intonation_reconstruction). train=True applies dropout and the CFG condition dropout;
    train=False is deterministic but still draws the objective's noise and times from ``key``.
    The objective's :class:`~jaxspeech.objectives.TrainingContext` comes from ``progress`` (a
    ``train.TrainProgress``: the step, and the moving average of the params as the target network;
    without one: step 0 and the params themselves), ``total_steps`` (curricula) and ``teacher`` (the
    frozen teacher's decoder network, for objectives distilled from one). With
    ``decoder.noise_around_mu`` the objective's noise is centred on the frame-level text means
    (CoMoSpeech, Grad-TTS).
    Metrics: loss, duration_loss, prior_loss, the objective's metrics (flow matching: flow_mse,
    t_mean), intonation_ce, intonation_accuracy, break_frames (mean MAS frames per break token),
    and the pitch and reconstruction terms when enabled.
    """
    config = as_config(config)
    dec = config.decoder
    if not 0.0 <= dec.cond_drop_prob < 1.0:
        raise ValueError(f"decoder.cond_drop_prob must be in [0, 1), got {dec.cond_drop_prob}")
    segment = dec.segment_frames
    if segment is not None and segment < 1:
        raise ValueError(f"decoder.segment_frames must be >= 1 or None, got {segment}")
    objective, objective_config = objective_of(config)
    if "teacher" in objective.needs and teacher is None:
        raise ValueError(f"the {objective.name} objective distils a teacher: pass its decoder network as teacher=")
    reconstruction_weight = config.intonation.reconstruction_weight
    pitch_conditioned = reads_pitch(config)

    def loss_fn(params: nnx.State, batch: Batch, key: jax.Array,
                progress: Any = None) -> tuple[jax.Array, dict[str, jax.Array]]:
        for name in ("tokens", "token_mask", "speaker", "mel", "mel_mask"):
            if name not in batch:
                raise KeyError(f"TTS loss needs batch[{name!r}]; batch has {sorted(batch)}")
        tokens, token_mask, speaker = batch["tokens"], batch["token_mask"].astype(bool), batch["speaker"]
        mel_mask = batch["mel_mask"].astype(bool)
        chex.assert_rank(batch["mel"], 3)
        chex.assert_equal_shape_prefix([batch["mel"], mel_mask], 2)
        mel = masked((batch["mel"].astype(jnp.float32) - config.mel_mean) / config.mel_std, mel_mask)
        k_dropout, k_cond, k_segment, k_objective = jax.random.split(key, 4)
        boundaries = boundaries_of(batch)
        contour = batch.get("boundary_contour") if boundaries is not None else None
        if boundaries is not None and contour is None:
            raise KeyError("training with boundaries needs batch['boundary_contour'] [B,N,C]")
        model = nnx.merge(graphdef, params)
        rngs = nnx.Rngs(dropout=k_dropout) if train else None
        enc = model.encode(tokens, token_mask, speaker, boundaries, contour=contour, rngs=rngs)

        path, durations = align(enc["mu"], mel, token_mask, mel_mask)
        metrics = {"duration_loss": duration_loss(enc["log_durations"], durations, token_mask)}
        mu_frames = jnp.einsum("blt,blf->btf", path, enc["mu"])  # gradient reaches mu through the product
        metrics["prior_loss"] = prior_loss(mel, mu_frames, mel_mask)

        cond = {"mu": mu_frames, "speaker": speaker, "mask": mel_mask}
        if pitch_conditioned or model.pitch is not None:
            log_f0, voiced = pitch_targets(config.pitch, batch, mel_mask)
        if pitch_conditioned:  # teacher forcing: the recording's pitch
            cond["pitch"] = pitch_condition(config.pitch, log_f0, voiced.astype(jnp.float32), mel_mask)
        target = mel
        if segment is not None and segment < mel.shape[1]:
            names = [name for name in cond if name != "speaker"]
            target, *cut = random_segment(k_segment, [mel] + [cond[name] for name in names], mel_mask, segment)
            cond.update(zip(names, cut))
        noise_mean = cond["mu"] if dec.noise_around_mu else None  # before CFG dropout zeroes some rows' mu
        if train and dec.cond_drop_prob > 0:
            cond = _drop_condition(k_cond, cond, null_condition(config, cond["mask"]), dec.cond_drop_prob)
        dropout_key = k_dropout if train else None
        network = decoder_network(graphdef, params, key=dropout_key)
        context = training_context(objective, lambda p: decoder_network(graphdef, p, key=dropout_key), params,
                                   progress, total_steps=total_steps, teacher=teacher)
        decoder_loss, decoder_metrics = objective.loss(network, target, k_objective, mask=cond["mask"], cond=cond,
                                                       config=objective_config, noise_mean=noise_mean, context=context)
        metrics.update(decoder_metrics)

        if boundaries is not None:
            present = boundaries["boundary_mask"].astype(bool)
            metrics.update(intonation_terms(enc["intonation_logits"], enc["intonation_weights"], present))
            if reconstruction_weight > 0:
                metrics["intonation_reconstruction"] = contour_reconstruction(enc["intonation_contour"], contour,
                                                                              present)
        else:
            metrics.update(intonation_ce=jnp.zeros((), jnp.float32), intonation_accuracy=jnp.zeros((), jnp.float32))
        if model.pitch is not None:  # on the MAS-expanded detached states
            frames = jnp.einsum("blt,blc->btc", path, pitch_inputs(enc["hidden"], durations))
            metrics.update(pitch_terms(model.pitch(frames, mel_mask, rngs), log_f0, voiced, mel_mask))

        is_break = token_mask & (tokens == config.break_token)
        metrics["break_frames"] = (jnp.sum(jnp.where(is_break, durations, 0))
                                   / jnp.maximum(jnp.sum(is_break), 1)).astype(jnp.float32)
        loss = metrics["duration_loss"] + metrics["prior_loss"] + decoder_loss + metrics["intonation_ce"]
        if "intonation_reconstruction" in metrics:
            loss = loss + reconstruction_weight * metrics["intonation_reconstruction"]
        if "pitch_mse" in metrics:
            loss = loss + metrics["pitch_mse"] + metrics["voicing_bce"]
        return loss, {"loss": loss, **metrics}

    return loss_fn
