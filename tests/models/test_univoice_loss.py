"""UniVoice's loss: infill spans, both tasks' terms from one forward pass, batches with one task only, and a
few optimizer steps on a fixed mixed batch lowering both terms."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxspeech.data.packing import plan_packing
from jaxspeech.models import llm
from jaxspeech.models.univoice import flow_omni
from jaxspeech.models.univoice.config import UniVoiceConfig
from jaxspeech.models.univoice.loss import asr_training_inputs, infill_spans, make_loss_fn
from jaxspeech.models.univoice.model import batch_row_tokens, init, sequence_length, speech_length

F, T, L = 16, 24, 9
CONFIG = UniVoiceConfig(llm=llm.llm_config("tiny", vocab_size=30, num_layers=2), n_mels=F, encoder_dim=32,
                        encoder_layers=1, encoder_heads=2, encoder_conv_kernel=5, encoder_subsampling_channels=4)


def test_infill_spans_are_one_contiguous_run_of_the_drawn_fraction_inside_the_row():
    lengths = jnp.array([24, 10, 17, 1] * 50)
    spans = np.asarray(infill_spans(jax.random.key(0), lengths, T, (0.7, 1.0)))
    for span, length in zip(spans, np.asarray(lengths), strict=True):
        where = np.flatnonzero(span)
        assert where.size and np.all(np.diff(where) == 1) and where[-1] < length  # one run, inside the row
        assert round(0.7 * length) <= where.size <= length
    assert len({tuple(np.flatnonzero(s)) for s in spans[::4]}) > 10  # sizes and starts vary
    with pytest.raises(ValueError, match="infill fraction"):
        infill_spans(jax.random.key(0), lengths, T, (0.0, 1.0))


def _batch(tts):
    rng = np.random.default_rng(0)
    batch = len(tts)
    tokens = rng.integers(3, 30, (batch, L))
    tokens[:, 0] = 1  # a task token
    token_mask = np.arange(L)[None] < rng.integers(5, L + 1, (batch, 1))
    mel_mask = np.arange(T)[None] < rng.integers(12, T + 1, (batch, 1))
    return dict(tokens=jnp.asarray(tokens), token_mask=jnp.asarray(token_mask),
                target_mask=jnp.asarray(token_mask & (np.arange(L)[None] >= 1)),
                mel=jnp.asarray(rng.normal(size=(batch, T, F)), jnp.float32), mel_mask=jnp.asarray(mel_mask),
                tts=jnp.asarray(tts))  # fmt: skip


@pytest.fixture(scope="module")
def model():
    return init(CONFIG, jax.random.key(0))


def test_each_term_comes_from_its_own_rows(model):
    graphdef, params = model
    loss_fn = jax.jit(make_loss_fn(graphdef, lm_weight=0.5))
    asr_only = loss_fn(params, _batch([False, False]), jax.random.key(1))[1]
    tts_only = loss_fn(params, _batch([True, True]), jax.random.key(1))[1]
    assert asr_only["flow_mse"] == 0 and asr_only["lm_loss"] > 2.0 and asr_only["tts_rows"] == 0
    assert tts_only["lm_loss"] == 0 and tts_only["flow_mse"] > 0.5 and tts_only["asr_rows"] == 0
    mixed = loss_fn(params, _batch([False, True]), jax.random.key(1))[1]
    np.testing.assert_allclose(mixed["loss"], mixed["flow_mse"] + 0.5 * mixed["lm_loss"], rtol=1e-6)
    assert (mixed["asr_rows"], mixed["tts_rows"]) == (1, 1)


@pytest.mark.parametrize("lm_loss", ["ce", "emo"])
def test_a_few_steps_on_a_fixed_mixed_batch_lower_both_terms(model, lm_loss):
    graphdef, params = model
    batch = _batch([False, True, False, True])
    loss_fn = make_loss_fn(graphdef, lm_weight=1.0, lm_loss=lm_loss, audio_drop=0.0, text_drop=0.0)
    optimizer = optax.adam(3e-3)
    key = jax.random.key(2)  # one key: the same spans, times and noise every step

    @jax.jit
    def step(params, opt_state):
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    opt_state = optimizer.init(params)
    first = None
    for _ in range(40):
        params, opt_state, metrics = step(params, opt_state)
        first = first or {k: float(v) for k, v in metrics.items()}
    assert float(metrics["flow_mse"]) < 0.7 * first["flow_mse"]
    assert float(metrics["lm_loss"]) < 0.5 * first["lm_loss"]
    assert float(metrics["token_accuracy"]) > first["token_accuracy"]


@pytest.mark.parametrize("tts_head", ["infill", "flow_omni"])
def test_packed_batches_give_the_same_loss_and_gradients(tts_head):
    """The host's plan (``batch_row_tokens`` + next fit) reserves each row's exact length: the
    packed loss and its gradients equal the unpacked ones, CFG text dropout (rows shortened after
    planning) and an empty batch slot included."""
    config = dataclasses.replace(CONFIG, tts_head=tts_head)
    graphdef, params = init(config, jax.random.key(0))
    batch = {k: np.array(v) for k, v in _batch([False, True, False, True, False, True]).items()}
    batch["token_mask"][2], batch["mel_mask"][2], batch["target_mask"][2] = False, False, False  # an empty slot
    tokens = batch_row_tokens(config, batch)
    plan = plan_packing(tokens, sequence_length(config, speech=int(speech_length(config, T)), text=L, frames=T))
    assert plan["pack_owner"].shape[0] < 5 and tokens[2] == 0
    if tts_head == "infill":
        loss_fn = make_loss_fn(graphdef, lm_weight=0.5, text_drop=0.5, audio_drop=0.3)
    else:
        loss_fn = flow_omni.make_loss_fn(graphdef, lm_weight=0.5)
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (loss, metrics), grads = grad_fn(params, batch, jax.random.key(5))
    (packed_loss, packed_metrics), packed_grads = grad_fn(params, {**batch, **plan}, jax.random.key(5))
    np.testing.assert_allclose(packed_loss, loss, rtol=1e-5)
    assert packed_metrics["tts_rows"] == metrics["tts_rows"] == 3
    for got, want in zip(jax.tree.leaves(packed_grads), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("tts_head", ["infill", "flow_omni"])
def test_specaugment_masks_the_asr_rows_audio_in_training_only(model, tts_head):
    """The ASR rows' valid frames are masked (to the row's mean, SpecAugment's fill), TTS rows and padding
    keep theirs; the loss is the plain loss on a batch holding those features; evaluation never masks."""
    augment = dict(num_freq_masks=2, max_freq_width=4, num_time_masks=1, max_time_ratio=0.3)
    graphdef, params = model if tts_head == "infill" else init(dataclasses.replace(CONFIG, tts_head=tts_head),
                                                               jax.random.key(0))
    make = make_loss_fn if tts_head == "infill" else flow_omni.make_loss_fn
    batch, key = _batch([False, True, False, True]), jax.random.key(7)
    features, lengths = asr_training_inputs(batch, key, augment, True)
    mel, valid = np.asarray(batch["mel"]), np.asarray(batch["mel_mask"])
    changed = np.asarray(features) != mel
    assert changed[[0, 2]].any() and not changed[[1, 3]].any() and not changed[~valid].any()
    assert np.array_equal(np.asarray(lengths), valid.sum(1))
    np.testing.assert_array_equal(asr_training_inputs(batch, key, augment, False)[0], mel)

    augmented = jax.jit(make(graphdef, lm_weight=0.5, specaugment=augment))(params, batch, key)[0]
    on_masked_batch = jax.jit(make(graphdef, lm_weight=0.5))(params, {**batch, "mel": features}, key)[0]
    plain = jax.jit(make(graphdef, lm_weight=0.5))(params, batch, key)[0]
    np.testing.assert_allclose(augmented, on_masked_batch, rtol=1e-6)
    assert augmented != plain
    evaluation = make(graphdef, lm_weight=0.5, specaugment=augment, train=False)
    np.testing.assert_array_equal(jax.jit(evaluation)(params, batch, key)[0],
                                  jax.jit(make(graphdef, lm_weight=0.5, train=False))(params, batch, key)[0])


@pytest.mark.parametrize("upsample", [1, 2])
def test_encoder_ctc_term_matches_torch_ctc_on_the_transcripts(model, upsample):
    """ctc_weight adds lm_weight x ctc_weight x CTC of each ASR row's transcript (tokens after the task
    prompt, before <eos>) on the encoder's token logits: torch's CTC per label token, the rows that
    cannot be aligned counted out. ctc_upsample 2 doubles the CTC frames, which aligns the long row."""
    torch = pytest.importorskip("torch")
    graphdef, params = model if upsample == 1 else init(dataclasses.replace(CONFIG, ctc_upsample=2), jax.random.key(0))
    batch = {k: np.array(v) for k, v in _batch([False, False, True, False]).items()}
    lengths = np.array([5, 4, 9, 9])  # rows 0, 1: 3 and 2 labels; row 3: 7 labels, more than the encoder frames
    batch["token_mask"] = np.arange(L)[None] < lengths[:, None]
    batch["target_mask"] = batch["token_mask"] & (np.arange(L)[None] >= 1)
    batch["mel_mask"][3] = True  # 5 encoder frames
    blank, weight = 2, 0.4
    key = jax.random.key(3)
    with_ctc = make_loss_fn(graphdef, lm_weight=0.5, ctc_weight=weight, blank_id=blank, train=False)
    loss, metrics = jax.jit(with_ctc)(params, batch, key)
    plain, _ = jax.jit(make_loss_fn(graphdef, lm_weight=0.5, train=False))(params, batch, key)

    speech_lm = nnx.merge(graphdef, params)
    states, mask = speech_lm.encode(jnp.asarray(batch["mel"]), jnp.asarray(batch["mel_mask"].sum(1)))
    encoder = speech_lm.encoder_token_logits(states, mask)
    frames = np.asarray(encoder.mask.sum(1))
    log_probs = torch.log_softmax(torch.from_numpy(np.array(encoder.logits)), -1).transpose(0, 1)
    asr = [0, 1, 3]
    labels = [batch["tokens"][r, 1 : lengths[r] - 1] for r in asr]
    nll = torch.nn.functional.ctc_loss(
        log_probs[:, asr], torch.from_numpy(np.concatenate(labels)), torch.from_numpy(frames[asr]),
        torch.tensor([len(x) for x in labels]), blank=blank, reduction="none").numpy()  # fmt: skip
    encoder_frames = np.asarray(mask.sum(1))
    np.testing.assert_array_equal(frames, upsample * encoder_frames)
    if upsample == 1:
        assert frames[3] < 7 and np.isinf(nll[2])  # row 3 has no alignment
        expected = (nll[0] + nll[1]) / (len(labels[0]) + len(labels[1]))
    else:
        assert np.all(np.isfinite(nll))
        expected = nll.sum() / sum(len(x) for x in labels)
    np.testing.assert_allclose(metrics["encoder_ctc"], expected, rtol=1e-5)
    np.testing.assert_allclose(loss - plain, 0.5 * weight * expected, rtol=1e-4)


def test_ctc_needs_a_blank_id_and_a_weight_of_at_least_zero(model):
    graphdef, _ = model
    with pytest.raises(ValueError, match="blank_id"):
        make_loss_fn(graphdef, ctc_weight=0.3)
    with pytest.raises(ValueError, match="ctc_weight must be >= 0"):
        flow_omni.make_loss_fn(graphdef, ctc_weight=-1.0, blank_id=0)
