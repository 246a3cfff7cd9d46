"""The Whisper recipe on the tiny eSpeak corpus: train through the CLI, resume, evaluate; sparse
fine-tuning (exact zeros, target sparsity) and SquareHead distillation against the dense run."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxspeech import cli
from jaxspeech.data.specaugment import spec_augment
from jaxspeech.models import whisper
from jaxspeech.sparsity import pruning_masks, sparsity_of
from jaxspeech.train.config import read_saved_config
from jaxspeech.train.metrics import read_metrics
from jaxspeech.train.recipes import whisper_asr as recipe

pytestmark = pytest.mark.slow

# Dropout off: a student equal to its teacher then has exactly zero SquareHead loss.
TINY = ["--config.model.d_model=32", "--config.model.encoder_layers=1", "--config.model.decoder_layers=1",
        "--config.model.num_heads=2", "--config.model.dropout=0.0", "--config.data.num_buckets=1",
        "--config.data.max_frames=2048", "--config.data.num_threads=1", "--config.train.log_every=1",
        "--config.train.checkpoint_every=0", "--config.train.eval_every=0", "--config.decode.max_new_tokens=8"]


def train(corpus, workdir, steps, *overrides):
    argv = ["train", "--config", "configs/whisper_tiny_ft.py", "--workdir", str(workdir),
            f"--config.data.dir={corpus}", f"--config.train.steps={steps}", *TINY, *overrides]
    assert cli.main(argv) == 0


def metrics(workdir):
    return {m["step"]: m for m in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "loss" in m}


def sparse(corpus, workdir, dense, steps, *overrides):
    train(corpus, workdir, steps, "--config.sparsity.target=0.5", f"--config.sparsity.dense_workdir={dense}",
          "--config.sparsity.end_step=2", "--config.sparsity.frequency=1", *overrides)


@pytest.fixture(scope="module")
def dense(tiny_corpus, tmp_path_factory):
    """3 steps, then the same command with 5 steps: resumes at step 3."""
    workdir = tmp_path_factory.mktemp("whisper")
    train(tiny_corpus, workdir, 3)
    assert sorted(metrics(workdir)) == [1, 2, 3]
    train(tiny_corpus, workdir, 5)
    return workdir


def test_train_and_evaluate_through_the_cli(dense, capsys):
    assert {"config.json", "vocab.json", "checkpoints", "metrics.jsonl", "data_stats.json"} <= set(os.listdir(dense))
    stats = json.loads((dense / "data_stats.json").read_text())
    assert 0 <= stats["padding_bucketed"] < 1
    capsys.readouterr()
    assert cli.main(["evaluate", "--workdir", str(dense), "--split", "test-seen", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"cer", "wer", "utterances", "rtf"} <= set(result) and result["step"] == 5 and result["utterances"] > 0
    assert result["decoder"] == "greedy" and np.isfinite(result["cer"])
    assert cli.main(["evaluate", "--workdir", str(dense), "--split", "test-seen", "--beam-size", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decoder"] == "beam2"


def test_resumed_run_equals_an_uninterrupted_one(dense, tiny_corpus, tmp_path):
    train(tiny_corpus, tmp_path, 5)
    got, expected = metrics(dense), metrics(tmp_path)
    assert sorted(got) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([got[s]["loss"] for s in (4, 5)], [expected[s]["loss"] for s in (4, 5)], rtol=1e-5)


def test_sparse_fine_tuning_keeps_pruned_weights_zero_at_the_target(dense, tiny_corpus, tmp_path):
    sparse(tiny_corpus, tmp_path, dense, 4)  # masks reach 50% at step 2; step 3 updates the survivors only
    state = recipe._restore(str(tmp_path)).state
    masks = pruning_masks(state.opt_state)
    pruned = [(p, m) for p, m in zip(jax.tree.leaves(state.params), jax.tree.leaves(masks, is_leaf=lambda x: x is None))
              if m is not None]
    assert pruned and all(not np.any(np.asarray(p)[~np.asarray(m)]) for p, m in pruned)
    report = sparsity_of(state.params, masks)
    np.testing.assert_allclose([float(v) for v in report.values()], 0.5, atol=0.01)
    assert json.loads((tmp_path / "config.json").read_text())["model"]["d_model"] == 32  # adopted from the dense run
    result = recipe.evaluate(str(tmp_path), split="test-seen")
    assert result["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_squarehead_adds_the_distillation_term_against_the_dense_teacher(dense, tiny_corpus, tmp_path):
    sparse(tiny_corpus, tmp_path, dense, 3, "--config.sparsity.distill=squarehead")
    first, third = metrics(tmp_path)[1], metrics(tmp_path)[3]
    # Step 1 sees the unpruned student, identical to the teacher; step 3 the student pruned to 44% at step 2.
    assert first["squarehead/encoder"] + first["squarehead/decoder"] < 1e-6
    distill = third["squarehead/encoder"] + third["squarehead/decoder"]
    assert distill > 1e-3
    np.testing.assert_allclose(third["loss"], third["task"] + distill, rtol=1e-5)


def test_hidden_states_are_the_block_outputs():
    config = whisper.whisper_config("tiny", d_model=32, encoder_layers=2, decoder_layers=3, encoder_heads=2,
                                    decoder_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=40,
                                    eos_token_id=38, decoder_start_token_id=39, pad_token_id=0, bos_token_id=0,
                                    begin_suppress_tokens=(), max_source_positions=20)
    graphdef, params = whisper.init(config, jax.random.key(0))
    features = jax.random.normal(jax.random.key(1), (2, 80, 40))
    ids = jnp.array([[39, 1, 2, 3], [39, 4, 5, 6]])
    mask = jnp.arange(40)[None] < jnp.array([[40], [24]])
    logits, hidden = whisper.apply(graphdef, params, features, ids, frame_mask=mask, output_hidden_states=True)
    assert len(hidden.encoder) == 2 and len(hidden.decoder) == 3
    assert hidden.encoder[0].shape == (2, 20, 32) and hidden.decoder[0].shape == (2, 4, 32)
    np.testing.assert_array_equal(hidden.encoder_mask, mask[:, ::2])
    decoder = nnx.merge(graphdef, params).decoder
    np.testing.assert_allclose(decoder.embed_tokens.attend(decoder.layer_norm(hidden.decoder[-1])), logits, atol=1e-5)
    np.testing.assert_array_equal(logits, whisper.apply(graphdef, params, features, ids, frame_mask=mask))


def test_fine_tunes_a_transformers_checkpoint_with_its_tokenizer_and_the_emo_loss(tiny_corpus, tmp_path):
    import torch
    import transformers

    from tests.whisper_tiny_checkpoint import EOT, NO_TIMESTAMPS, SOT, save_tokenizer

    checkpoint = tmp_path / "checkpoint"
    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        vocab_size=96, num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=1500,
        max_target_positions=128, decoder_start_token_id=SOT, eos_token_id=EOT, pad_token_id=EOT, bos_token_id=EOT,
        begin_suppress_tokens=None, suppress_tokens=None)  # fmt: skip
    transformers.WhisperForConditionalGeneration(config).save_pretrained(checkpoint)
    save_tokenizer(checkpoint)
    workdir = tmp_path / "run"
    train(tiny_corpus, workdir, 2, f"--config.model.checkpoint={checkpoint}", "--config.model.max_source_positions=300",
          "--config.loss.kind=emo", "--config.loss.emo_combine=emo_scale")
    logged = metrics(workdir)
    assert not (workdir / "vocab.json").exists() and sorted(logged) == [1, 2]
    assert 0 < logged[2]["emo"] < 2
    ctc_weight = read_saved_config(str(workdir)).loss.ctc_weight  # the config's joint CTC-attention term
    assert ctc_weight > 0 and logged[2]["ctc"] > 0
    # sg(emo / ce) ce + emo, plus the CTC term on the encoder
    np.testing.assert_allclose(logged[2]["loss"], 2 * logged[2]["emo"] + ctc_weight * logged[2]["ctc"], rtol=1e-5)
    run = recipe._restore(str(workdir))
    assert run.vocabulary.prefix == (SOT, NO_TIMESTAMPS)  # an English-only vocabulary (96 < 51865 tokens)
    assert run.state.params["encoder"]["embed_positions"][...].shape == (300, 32)
    assert recipe.evaluate(str(workdir), split="test-seen")["utterances"] > 0


def test_training_loss_applies_specaugment_with_the_first_half_of_the_key(dense):
    """The loss on raw features with SpecAugment configured equals the loss with SpecAugment off on
    features augmented by hand with the first split of the key; and the masks change the loss."""
    run = recipe._restore(str(dense))
    augment = dict(num_freq_masks=2, max_freq_width=20, num_time_masks=2, max_time_ratio=0.2)
    off = dict(num_freq_masks=0, max_freq_width=0, num_time_masks=0, max_time_ratio=0.0)
    rng = np.random.default_rng(0)
    mel_mask = jnp.arange(64)[None] < jnp.array([[64], [40]])
    batch = {"mel": jnp.asarray(rng.standard_normal((2, 64, 80)), jnp.float32), "mel_mask": mel_mask,
             "tokens": jnp.asarray(rng.integers(1, 10, (2, 6)), jnp.int32), "token_mask": jnp.ones((2, 6), bool)}
    key = jax.random.key(3)

    def loss(specaugment, batch):
        config = run.config.copy_and_resolve_references()
        config.model.specaugment.update(specaugment)
        return recipe.make_loss_fn(config, run.graphdef, run.vocabulary)(run.state.params, batch, key)[0]

    augmented = {**batch, "mel": spec_augment(batch["mel"], mel_mask, jax.random.split(key)[0], **augment)}
    np.testing.assert_allclose(loss(augment, batch), loss(off, augmented), rtol=1e-6)
    assert abs(float(loss(augment, batch)) - float(loss(off, batch))) > 1e-4


def test_ctc_auxiliary_loss_is_torch_ctc_on_the_encoder_states_through_the_tied_embeddings(dense):
    """loss(ctc_weight w) - loss(0) = w x (sum of torch CTC NLLs over the alignable rows) / their tokens, with
    the logits built by hand: LayerNorm(last encoder block) @ token embeddings^T, blank = eot. Row 2 has
    more tokens than encoder frames: counted out."""
    import torch

    run = recipe._restore(str(dense))
    rng = np.random.default_rng(1)
    mel_mask = jnp.arange(64)[None] < jnp.array([[64], [40], [8]])
    lengths = np.array([6, 3, 6])
    batch = {"mel": jnp.asarray(rng.standard_normal((3, 64, 80)), jnp.float32), "mel_mask": mel_mask,
             "tokens": jnp.asarray(rng.integers(1, 10, (3, 6)), jnp.int32),
             "token_mask": jnp.asarray(np.arange(6)[None] < lengths[:, None])}
    key = jax.random.key(3)

    def loss(weight):
        config = run.config.copy_and_resolve_references()
        config.model.specaugment.update(dict(num_freq_masks=0, num_time_masks=0))
        config.loss.ctc_weight = weight
        return recipe.make_loss_fn(config, run.graphdef, run.vocabulary)(run.state.params, batch, key)

    (with_ctc, logged), (without, _) = loss(0.5), loss(0.0)
    _, hidden = whisper.apply(run.graphdef, run.state.params, jnp.swapaxes(batch["mel"], 1, 2),
                              jnp.zeros((3, 1), jnp.int32), frame_mask=mel_mask, output_hidden_states=True)
    last = np.asarray(hidden.encoder[-1], np.float64)
    norm = run.state.params["encoder"]["layer_norm"]
    normed = (last - last.mean(-1, keepdims=True)) / np.sqrt(last.var(-1, keepdims=True) + 1e-5)
    normed = normed * np.asarray(norm["scale"][...]) + np.asarray(norm["bias"][...])
    logits = normed @ np.asarray(run.state.params["decoder"]["embed_tokens"]["embedding"][...], np.float64).T
    frames = np.asarray(hidden.encoder_mask).sum(1)
    nll = torch.nn.functional.ctc_loss(
        torch.log_softmax(torch.tensor(logits[:2]), -1).transpose(0, 1), torch.tensor(np.asarray(batch["tokens"][:2])),
        torch.tensor(frames[:2]), torch.tensor(lengths[:2]), blank=run.vocabulary.eot, reduction="sum")
    expected = float(nll) / lengths[:2].sum()
    np.testing.assert_allclose(logged["ctc"], expected, rtol=1e-4)
    np.testing.assert_allclose(with_ctc - without, 0.5 * expected, rtol=1e-4)
