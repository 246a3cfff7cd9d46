"""LLaMA-family decoder: parity with transformers' LlamaForCausalLM on random checkpoints saved to a temp dir
(logits, padded batches, cached greedy decoding), export that transformers loads back, and named import errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.models import llm
from jaxspeech.models.checkpoint_import import CheckpointError
from jaxspeech.nn.attention import MaskSpec
from jaxspeech.samplers import autoregressive

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB, EOS = 96, 2
HF_SIZES = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=88, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, rope_theta=5000.0, rms_norm_eps=1e-5, max_position_embeddings=64,
                initializer_range=0.2, bos_token_id=1, eos_token_id=EOS, pad_token_id=0)  # fmt: skip


def _tokenizer():
    """A small byte-level BPE tokenizer, as LLaMA-family checkpoints ship (tokenizer.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet()[:60])  # fmt: skip
    bpe.train_from_iterator(["the cat sat on the mat", "a dog ran", "speech models"] * 20, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>",
                                                eos_token="</s>")  # fmt: skip


def _save_reference(path, *, tie: bool, dtype=torch.float32, seed=0, **overrides):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(**{**HF_SIZES, **overrides}, tie_word_embeddings=tie)
    model = transformers.LlamaForCausalLM(config).eval().to(dtype)
    model.save_pretrained(path, safe_serialization=True)
    _tokenizer().save_pretrained(path)
    return model


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def checkpoint(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    return path, _save_reference(path, tie=request.param)


def _tokens(batch=2, length=11, seed=3):
    return np.random.default_rng(seed).integers(3, VOCAB, size=(batch, length))


def _reference_logits(model, tokens, attention_mask=None):
    with torch.no_grad():
        mask = None if attention_mask is None else torch.tensor(attention_mask, dtype=torch.long)
        return model(torch.tensor(tokens), attention_mask=mask).logits.numpy()


def test_logits_match_transformers(checkpoint):
    path, reference = checkpoint
    config, graphdef, params = llm.import_transformers_checkpoint(path)
    assert config.tie_embeddings == reference.config.tie_word_embeddings and config.rope_theta == 5000.0
    tokens = _tokens()
    ours = jax.jit(llm.apply, static_argnums=0)(graphdef, params, jnp.asarray(tokens))
    expected = _reference_logits(reference, tokens)
    assert np.abs(expected).max() > 1.0  # logits far from uniform: a wrong layer would show
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=1e-4)


def test_right_padded_batch_matches_transformers_on_real_tokens(checkpoint):
    path, reference = checkpoint
    _, graphdef, params = llm.import_transformers_checkpoint(path)
    tokens, lengths = _tokens(), np.array([11, 6])
    attention_mask = np.arange(11)[None] < lengths[:, None]
    mask = MaskSpec.from_lengths(jnp.asarray(lengths), 11, causal=True)
    ours = np.asarray(llm.apply(graphdef, params, jnp.asarray(tokens), mask=mask))
    expected = _reference_logits(reference, tokens, attention_mask)
    np.testing.assert_allclose(ours[attention_mask], expected[attention_mask], atol=1e-4, rtol=1e-4)


def test_cached_greedy_decoding_matches_transformers_generate(checkpoint):
    path, reference = checkpoint
    config, graphdef, params = llm.import_transformers_checkpoint(path)
    prompt, new = _tokens(batch=2, length=5, seed=7), 12

    @jax.jit
    def decode(params, prompt):
        cache = llm.init_cache(config, prompt.shape[0], prompt.shape[1] + new)
        return autoregressive.decode(llm.make_step(graphdef, params), cache, prompt, max_new_tokens=new,
                                     eos_id=config.eos_token_id)  # fmt: skip

    ours = decode(params, jnp.asarray(prompt))
    with torch.no_grad():
        expected = reference.generate(torch.tensor(prompt), max_new_tokens=new, do_sample=False,
                                      pad_token_id=0, eos_token_id=EOS).numpy()[:, prompt.shape[1]:]  # fmt: skip
    for row, length in enumerate(np.asarray(ours.lengths)):  # transformers pads rows after their eos
        np.testing.assert_array_equal(np.asarray(ours.tokens)[row, :length], expected[row, :length])
    assert np.asarray(ours.lengths).max() >= 4


def test_export_loads_in_transformers_with_the_same_logits_and_tokenizer(checkpoint, tmp_path):
    path, _ = checkpoint
    config, graphdef, params = llm.import_transformers_checkpoint(path)
    tokenizer = llm.load_tokenizer(path)
    llm.save_transformers_checkpoint(params, config, tmp_path, tokenizer=tokenizer)
    reloaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path, local_files_only=True).eval()
    tokens = _tokens()
    np.testing.assert_allclose(_reference_logits(reloaded, tokens), llm.apply(graphdef, params, jnp.asarray(tokens)),
                               atol=1e-4, rtol=1e-4)  # fmt: skip
    assert llm.read_transformers_config(tmp_path) == config
    text = "the cat ran"
    assert llm.load_tokenizer(tmp_path)(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_bfloat16_safetensors_keep_their_dtype_or_cast(tmp_path):
    reference = _save_reference(tmp_path, tie=True, dtype=torch.bfloat16)
    _, graphdef, stored = llm.import_transformers_checkpoint(tmp_path, dtype=None)
    assert {leaf.dtype for leaf in jax.tree.leaves(stored)} == {jnp.dtype(jnp.bfloat16)}
    _, _, cast = llm.import_transformers_checkpoint(tmp_path)
    embedding = reference.model.embed_tokens.weight.detach().float().numpy()
    np.testing.assert_array_equal(cast["embed_tokens"]["embedding"][...], embedding)


def test_presets_and_abstract_init_agree_with_the_published_sizes():
    _, abstract = llm.abstract_init(llm.llm_config("smollm2-360m"))
    assert sum(x.size for x in jax.tree.leaves(abstract)) == 361_821_120  # SmolLM2-360M's parameter count
    config = llm.llm_config("tiny")
    _, params = llm.init(config, jax.random.key(0))
    _, shapes = llm.abstract_init(config)
    assert jax.tree.map(lambda x: x.shape, params) == jax.tree.map(lambda x: x.shape, shapes)
    # transformers reads our config back into the same architecture
    assert llm.LlmConfig.from_transformers(config.to_transformers()) == config


def _write_state_dict(path, reference, state_dict):
    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    reference.config.save_pretrained(path)
    tensors = {name: tensor.detach().clone().contiguous() for name, tensor in state_dict.items()}  # unshared
    save_file(tensors, os.path.join(path, "model.safetensors"))


def test_bad_checkpoints_are_named(checkpoint, tmp_path):
    path, reference = checkpoint
    state = dict(reference.state_dict())
    broken = {k: v for k, v in state.items() if "layers.1.mlp.up_proj" not in k}
    broken["model.layers.0.self_attn.q_proj.weight"] = torch.zeros(32, 16)
    broken["model.extra.weight"] = torch.zeros(3)
    _write_state_dict(tmp_path / "broken", reference, broken)
    with pytest.raises(CheckpointError) as err:
        llm.import_transformers_checkpoint(tmp_path / "broken")
    message = str(err.value)
    assert "missing tensors: model.layers.1.mlp.up_proj.weight" in message
    assert "model.layers.0.self_attn.q_proj.weight expected (32, 32) got (32, 16)" in message
    assert "unexpected tensors: model.extra.weight" in message
    with pytest.raises(FileNotFoundError, match="not found"):
        llm.import_transformers_checkpoint(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        llm.import_transformers_checkpoint(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        llm.load_tokenizer(tmp_path / "empty")


@pytest.mark.parametrize("change, match", [
    (dict(model_type="whisper"), "not a LLaMA-family config"),
    (dict(rope_scaling={"rope_type": "llama3", "factor": 8.0}), "only unscaled RoPE"),
    (dict(hidden_act="gelu"), "hidden_act"),
])  # fmt: skip
def test_configs_of_other_families_or_options_are_refused(tmp_path, change, match):
    config = {**llm.llm_config("tiny").to_transformers(), **change}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=match):
        llm.import_transformers_checkpoint(tmp_path)


def test_a_tied_config_with_a_different_lm_head_is_refused(tmp_path):
    reference = _save_reference(tmp_path / "ref", tie=False)
    state = dict(reference.state_dict())
    _write_state_dict(tmp_path / "tied", reference, state)
    config = json.loads((tmp_path / "tied" / "config.json").read_text())
    (tmp_path / "tied" / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    with pytest.raises(CheckpointError, match="lm_head.weight differs"):
        llm.import_transformers_checkpoint(tmp_path / "tied")


def test_resize_vocabulary_keeps_old_tokens_and_starts_new_ones_at_the_mean():
    for tie in (True, False):
        config = llm.llm_config("tiny", tie_embeddings=tie)
        graphdef, params = llm.init(config, jax.random.key(0))
        grown_config, grown = llm.resize_vocabulary(config, params, config.vocab_size + 3)
        grown_graphdef, _ = llm.init(grown_config, jax.random.key(1))
        tokens = jnp.asarray(_tokens(length=6) % config.vocab_size)
        before = llm.apply(graphdef, params, tokens)
        after = llm.apply(grown_graphdef, grown, tokens)
        np.testing.assert_allclose(after[..., :config.vocab_size], before, atol=1e-5)
        table = np.asarray(grown["embed_tokens"]["embedding"][...])
        np.testing.assert_allclose(table[-1], table[:config.vocab_size].mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="shrinking"):
        llm.resize_vocabulary(config, params, 10)
