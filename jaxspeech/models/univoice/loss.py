"""UniVoice's training loss over a batch mixing ASR and TTS rows, from one forward pass.

TTS rows: rectified flow (``x_t = (1 - t) noise + t x1``, x1 the normalised mel, t ~ U(t_min, 1)) with one contiguous
infill span of 70-100% of the frames per row (F5-TTS): the condition is the mel with the span
zeroed, the loss is the velocity MSE on the span only. Classifier-free guidance dropout per row:
the audio condition alone (``audio_drop``) or the audio condition and the text (``text_drop``).
ASR rows: cross-entropy (or EMO) on the transcript tokens, plus ``ctc_weight`` x a CTC loss of the
transcript on the audio encoder's per-frame token logits (joint CTC-attention training, Kim et al. 2017;
``SpeechLM.encoder_token_logits``, blank = ``<eos>``): a from-scratch encoder learns from CTC's alignment
what the LLM's cross-entropy reaches it only through attention still being learnt. Total: flow MSE +
lm_weight x (LM loss + ctc_weight x CTC) (UniVoice: lm_weight 0.005, no CTC: its Whisper encoder is
pretrained and frozen).

Batch keys: ``tokens`` [B, L] int and ``token_mask`` [B, L] (ASR: task prompt then transcript then
eos; TTS: the utterance's text), ``target_mask`` [B, L] (the tokens an ASR row is trained to
predict: transcript and eos), ``mel`` [B, T, n_mels] and ``mel_mask`` [B, T] (an ASR row's audio
features, a TTS row's target frames), ``tts`` [B] bool; with a Whisper audio encoder ``asr_features``
and ``asr_feature_lengths`` (``data.univoice.WhisperFeatures``) are the ASR rows' audio instead; with
``pack_row``, ``pack_offset`` and ``pack_owner`` (``data.packing``) the LLM runs on packed rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.data.specaugment import spec_augment
from jaxspeech.losses.ctc import ctc_token_mean
from jaxspeech.losses.emo import emo_loss, token_cross_entropy
from jaxspeech.losses.flow_matching import flow_matching_error, path_sample
from jaxspeech.models.univoice.layout import Packing
from jaxspeech.models.univoice.model import EncoderLogits, Rows

Batch = Mapping[str, jax.Array]
LM_LOSSES = ("ce", "emo")
_AUGMENT_STREAM = 0x5A  # fold_in data of the SpecAugment key (the other keys are split from the loss's key)


def asr_inputs(batch: Batch) -> tuple[jax.Array, jax.Array]:
    """The audio encoder's input and lengths [B]: ``asr_features`` (Whisper's window) when the batch has
    them, else the log-mels."""
    if "asr_features" in batch:
        return batch["asr_features"], batch["asr_feature_lengths"]
    return batch["mel"], jnp.sum(batch["mel_mask"], axis=1, dtype=jnp.int32)


def asr_training_inputs(batch: Batch, key: jax.Array, specaugment: Mapping[str, Any] | None,
                        train: bool) -> tuple[jax.Array, jax.Array]:
    """``asr_inputs`` [B, Tf, F], [B] as a loss reads them: in training with ``specaugment`` (``spec_augment``'s
    mask settings), the ASR rows' valid frames masked, keyed by a fold of the loss's ``key`` that none of its
    other draws use."""
    features, lengths = asr_inputs(batch)
    if not (train and specaugment):
        return features, lengths
    asr_frames = (jnp.arange(features.shape[1])[None, :] < lengths[:, None]) & ~batch["tts"][:, None]
    return spec_augment(features, asr_frames, jax.random.fold_in(key, _AUGMENT_STREAM), **specaugment), lengths


def batch_packing(batch: Batch) -> Packing | None:
    """The batch's packing plan (``data.packing``'s ``pack_row``, ``pack_offset``, ``pack_owner``), or None."""
    if "pack_owner" not in batch:
        return None
    return Packing(batch["pack_row"], batch["pack_offset"], batch["pack_owner"])


def asr_lm_loss(text_logits: jax.Array, batch: Batch, emo_table: jax.Array | None = None
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The LM loss on the ASR rows' targets (text position i predicts token i + 1): cross-entropy, or EMO
    over ``emo_table`` [V, D] (held constant). Returns (loss, {lm_loss, token_accuracy, tts_rows, asr_rows})."""
    tokens, tts = batch["tokens"], batch["tts"]
    logits, targets = text_logits[:, :-1], tokens[:, 1:]
    target_mask = batch["target_mask"][:, 1:] & batch["token_mask"][:, 1:] & ~tts[:, None]
    count = jnp.maximum(jnp.sum(target_mask), 1)
    if emo_table is not None:
        lm, _ = emo_loss(logits, targets, target_mask, jax.lax.stop_gradient(emo_table))
    else:
        lm = jnp.sum(jnp.where(target_mask, token_cross_entropy(logits, targets), 0.0)) / count
    correct = (jnp.argmax(logits, axis=-1) == targets) & target_mask
    return lm, {"lm_loss": lm, "token_accuracy": jnp.sum(correct) / count,
                "tts_rows": jnp.sum(tts).astype(jnp.int32),
                "asr_rows": jnp.sum(~tts & jnp.any(batch["token_mask"], axis=1)).astype(jnp.int32)}  # fmt: skip


def transcript_labels(batch: Batch) -> tuple[jax.Array, jax.Array]:
    """The ASR rows' transcripts left-aligned, without the task prompt and ``<eos>``: (labels [B, L],
    label_mask [B, L]); rows without targets (TTS rows) have no labels."""
    tokens, targets = batch["tokens"], batch["target_mask"]
    width = tokens.shape[1]
    start = jnp.argmax(targets, axis=1)
    count = jnp.maximum(jnp.sum(targets, axis=1) - 1, 0)  # the last target is <eos>
    index = jnp.minimum(start[:, None] + jnp.arange(width)[None, :], width - 1)
    return jnp.take_along_axis(tokens, index, axis=1), jnp.arange(width)[None, :] < count[:, None]


def asr_loss(outputs, batch: Batch, *, emo_table: jax.Array | None = None, ctc_weight: float = 0.0,
             blank_id: int | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The ASR rows' loss from a model's outputs: ``asr_lm_loss`` + ctc_weight x the CTC of the
    transcripts on ``outputs.encoder`` (``EncoderLogits``, needed when ctc_weight > 0, with the blank
    ``blank_id``). Metrics: ``asr_lm_loss``'s, plus ``encoder_ctc`` with CTC."""
    lm, metrics = asr_lm_loss(outputs.text_logits, batch, emo_table)
    if not ctc_weight:
        return lm, metrics
    encoder: EncoderLogits = outputs.encoder
    labels, label_mask = transcript_labels(batch)
    ctc = ctc_token_mean(encoder.logits, encoder.mask, labels, label_mask, blank_id=blank_id)
    return lm + ctc_weight * ctc, {**metrics, "encoder_ctc": ctc}


def check_ctc(ctc_weight: float, blank_id: int | None) -> None:
    """ValueError unless ctc_weight >= 0 and, when it is > 0, a blank id is given."""
    if ctc_weight < 0:
        raise ValueError(f"ctc_weight must be >= 0, got {ctc_weight}")
    if ctc_weight and blank_id is None:
        raise ValueError("ctc_weight > 0 needs blank_id (the <eos> token's id)")


def infill_spans(key: jax.Array, lengths: jax.Array, capacity: int,
                 fraction: tuple[float, float] = (0.7, 1.0)) -> jax.Array:
    """[B, capacity] bool: per row one contiguous span of round(f x length) frames, f ~ U(fraction),
    starting uniformly where it fits inside the row's ``lengths`` [B] frames."""
    low, high = fraction
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"infill fraction must satisfy 0 < low <= high <= 1, got {fraction}")
    k_size, k_start = jax.random.split(key)
    size = jnp.round(jax.random.uniform(k_size, lengths.shape, minval=low, maxval=high) * lengths).astype(jnp.int32)
    start = jnp.floor(jax.random.uniform(k_start, lengths.shape) * (lengths - size + 1)).astype(jnp.int32)
    frames = jnp.arange(capacity)[None, :]
    return (frames >= start[:, None]) & (frames < (start + size)[:, None])


def make_loss_fn(
    graphdef: nnx.GraphDef,
    *,
    lm_weight: float = 0.005,
    lm_loss: str = "ce",
    infill_fraction: tuple[float, float] = (0.7, 1.0),
    audio_drop: float = 0.3,
    text_drop: float = 0.2,
    t_min: float = 1e-3,
    ctc_weight: float = 0.0,
    blank_id: int | None = None,
    specaugment: Mapping[str, Any] | None = None,
    train: bool = True,
) -> Callable[[nnx.State, Batch, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]:
    """loss_fn(params, batch, key) -> (loss, metrics); see the module docstring.

    specaugment: ``data.specaugment.spec_augment``'s mask settings for the ASR rows' audio in training
    (``asr_training_inputs``; None: off). train=False: no SpecAugment, no dropout and no CFG dropout (the key
    still draws spans, times and noise, so an evaluation with a fixed key is comparable between
    checkpoints). Metrics: loss, flow_mse, lm_loss,
    token_accuracy (ASR targets predicted by argmax), tts_rows, asr_rows, and encoder_ctc with CTC.
    """
    if lm_loss not in LM_LOSSES:
        raise ValueError(f"lm_loss must be one of {LM_LOSSES}, got {lm_loss!r}")
    if not (0.0 <= audio_drop and 0.0 <= text_drop and audio_drop + text_drop <= 1.0):
        raise ValueError(f"need audio_drop, text_drop >= 0 with a sum <= 1, got {audio_drop}, {text_drop}")
    check_ctc(ctc_weight, blank_id)

    def loss_fn(params: nnx.State, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        tokens, mel, mel_mask, tts = batch["tokens"], batch["mel"], batch["mel_mask"], batch["tts"]
        k_span, k_drop, k_path, k_dropout = jax.random.split(key, 4)
        mel_lengths = jnp.sum(mel_mask, axis=1, dtype=jnp.int32)
        text_lengths = jnp.sum(batch["token_mask"], axis=1, dtype=jnp.int32)
        span = infill_spans(k_span, mel_lengths, mel.shape[1], infill_fraction) & tts[:, None]
        drop = jax.random.uniform(k_drop, tts.shape)
        drop_text = tts & (drop < text_drop) if train else jnp.zeros_like(tts)
        drop_audio = tts & (drop < text_drop + audio_drop) if train else jnp.zeros_like(tts)
        model = nnx.merge(graphdef, params)
        frames = model.config.normalise(mel)
        cond = jnp.where(span[..., None] | ~mel_mask[..., None] | drop_audio[:, None, None], 0.0, frames)
        x_t, t, target = path_sample(frames, k_path, sigma_min=0.0, t_min=t_min)
        features, feature_lengths = asr_training_inputs(batch, key, specaugment, train)
        rows = Rows(text=tokens, text_lengths=jnp.where(drop_text, 0, text_lengths), features=features,
                    feature_lengths=jnp.where(tts, 0, feature_lengths), x_t=x_t, cond=cond,
                    frame_lengths=jnp.where(tts, mel_lengths, 0), t=t, packing=batch_packing(batch))  # fmt: skip
        out = model(rows, rngs=nnx.Rngs(dropout=k_dropout) if train else None, encoder_logits=bool(ctc_weight))
        flow_mse = flow_matching_error(out.velocity, target, span)
        table = model.llm.output_embeddings() if lm_loss == "emo" else None
        lm, lm_metrics = asr_loss(out, batch, emo_table=table, ctc_weight=ctc_weight, blank_id=blank_id)
        loss = flow_mse + lm_weight * lm
        return loss, {"loss": loss, "flow_mse": flow_mse, **lm_metrics}

    return loss_fn
