"""Whisper against transformers' PyTorch WhisperForConditionalGeneration (random tiny models)."""

import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from jaxspeech.audio.features import log_mel  # noqa: E402
from jaxspeech.models.whisper import (  # noqa: E402
    CheckpointError,
    decoder_prefix,
    import_transformers_checkpoint,
    load_transformers_checkpoint,
    save_transformers_checkpoint,
    special_tokens,
)
from jaxspeech.models.whisper.decoding import (  # noqa: E402
    detect_language,
    generate,
    init_cache,
    make_step,
    stitch_windows,
    transcribe,
    window_starts,
)
from jaxspeech.models.whisper.model import apply  # noqa: E402
from jaxspeech.samplers.autoregressive import length_normalised  # noqa: E402

# Vocabulary of 80 text tokens then Whisper's special layout: eot 80, sot 81, languages en 82 and
# zh 83, translate 84, transcribe 85, start-of-lm 86, start-of-prev 87, no-speech 88,
# no-timestamps 89, six timestamp tokens 90..95.
EOT, SOT, EN, ZH, TRANSCRIBE, NO_TIMESTAMPS = 80, 81, 82, 83, 85, 89
PREFIX = (SOT, EN, TRANSCRIBE, NO_TIMESTAMPS)


def build_hf_whisper(path, **overrides):
    fields = dict(
        vocab_size=96, num_mel_bins=16, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=20,
        max_target_positions=32, decoder_start_token_id=SOT, eos_token_id=EOT, pad_token_id=EOT, bos_token_id=EOT,
        begin_suppress_tokens=None, suppress_tokens=None, init_std=0.2,
    )  # fmt: skip
    fields.update(overrides)
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**fields)).eval()
    model.save_pretrained(path)
    return model


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(checkpoint dir, torch model, (config, graphdef, params)) with 16 mels and 40-frame windows."""
    path = tmp_path_factory.mktemp("whisper_small")
    model = build_hf_whisper(path)
    return path, model, import_transformers_checkpoint(path)


def features(batch, frames=40, mels=16, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, mels, frames)).astype(np.float32)


def torch_logits(model, feats, ids):
    with torch.no_grad():
        return model(input_features=torch.tensor(feats), decoder_input_ids=torch.tensor(np.asarray(ids))).logits.numpy()


forward = jax.jit(apply, static_argnums=0)

# Every reference forward pass uses these shapes (3 examples, 40 frames, 14 tokens), so it compiles once.
BATCH, NEW = 3, 10
IDS = np.array([
    [SOT, EN, TRANSCRIBE, NO_TIMESTAMPS, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    [SOT, ZH, TRANSCRIBE, NO_TIMESTAMPS, 70, 9, 1, 1, 2, 3, 40, 50, 60, 79],
    [SOT, EN, TRANSCRIBE, 33, 44, 55, 66, 77, 0, 1, 2, 3, 4, 5],
])  # fmt: skip


def test_logits_match_transformers_from_safetensors_and_pytorch_bin(small, tmp_path):
    path, model, _ = small
    x = features(BATCH)
    expected = torch_logits(model, x, IDS)
    apply_fn, params = load_transformers_checkpoint(path)
    np.testing.assert_allclose(jax.jit(apply_fn)(params, x, IDS), expected, atol=1e-4)
    # transformers 5 always writes safetensors: write the .bin (tied proj_out included) by hand.
    shutil.copy(path / "config.json", tmp_path / "config.json")
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    config, graphdef, params_bin = import_transformers_checkpoint(tmp_path)
    np.testing.assert_allclose(forward(graphdef, params_bin, x, IDS), expected, atol=1e-4)


def _write_checkpoint(path, config, tensors):
    from safetensors.numpy import save_file

    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(path / "model.safetensors"))


def test_bad_checkpoints_are_named(small, tmp_path):
    from safetensors.numpy import load_file

    path, _, _ = small
    config = json.loads((path / "config.json").read_text())
    tensors = load_file(str(path / "model.safetensors"))
    broken = dict(tensors)
    del broken["model.decoder.layers.1.fc2.bias"]
    broken["model.encoder.layers.0.self_attn.q_proj.weight"] = np.zeros((64, 32), np.float32)
    broken["model.decoder.extra.weight"] = np.zeros(3, np.float32)
    _write_checkpoint(tmp_path / "broken", config, broken)
    with pytest.raises(CheckpointError) as error:
        import_transformers_checkpoint(tmp_path / "broken")
    message = str(error.value)
    assert "missing tensors: model.decoder.layers.1.fc2.bias" in message
    assert "model.encoder.layers.0.self_attn.q_proj.weight expected (64, 64) got (64, 32)" in message
    assert "unexpected tensors: model.decoder.extra.weight" in message
    # A config with more layers than the weights: every tensor of the extra layer is listed.
    _write_checkpoint(tmp_path / "deeper", {**config, "decoder_layers": 3}, tensors)
    with pytest.raises(CheckpointError, match=r"model\.decoder\.layers\.2\.self_attn\.k_proj\.weight"):
        import_transformers_checkpoint(tmp_path / "deeper")
    untied = {**tensors, "proj_out.weight": tensors["model.decoder.embed_tokens.weight"] + 1}
    _write_checkpoint(tmp_path / "untied", config, untied)
    with pytest.raises(CheckpointError, match="untied"):
        import_transformers_checkpoint(tmp_path / "untied")
    _write_checkpoint(tmp_path / "relu", {**config, "activation_function": "relu"}, tensors)
    with pytest.raises(ValueError, match="unsupported Whisper config: activation_function='relu'"):
        import_transformers_checkpoint(tmp_path / "relu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        import_transformers_checkpoint(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="model.safetensors or pytorch_model.bin"):
        import_transformers_checkpoint(tmp_path / "empty")


def test_export_loads_in_transformers_with_the_same_logits(small, tmp_path):
    _, _, (config, graphdef, params) = small
    # Perturb so the export cannot just be the file it came from.
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: x + 0.05 * rng.normal(size=x.shape).astype(np.float32), params)
    save_transformers_checkpoint(params, config, tmp_path)
    reloaded = transformers.WhisperForConditionalGeneration.from_pretrained(tmp_path).eval()
    x = features(BATCH, seed=3)
    np.testing.assert_allclose(forward(graphdef, params, x, IDS), torch_logits(reloaded, x, IDS), atol=1e-4)
    config_again, _, params_again = import_transformers_checkpoint(tmp_path)
    assert config_again == config
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params_again)):
        np.testing.assert_array_equal(a, b)


def test_frame_mask_matches_the_truncated_input(small):
    # Right padding under frame_mask (even valid length) gives the logits of the unpadded input,
    # whatever the padding holds.
    _, _, (_, graphdef, params) = small
    x = features(BATCH, seed=4)
    valid = 28
    padded = x.copy()
    padded[:, :, valid:] = np.nan
    mask = np.broadcast_to(np.arange(40) < valid, (BATCH, 40))
    masked = forward(graphdef, params, padded, IDS, frame_mask=jnp.asarray(mask))
    np.testing.assert_allclose(masked, forward(graphdef, params, x[:, :, :valid], IDS), atol=1e-5)
    with pytest.raises(ValueError, match="more than the 20"):
        forward(graphdef, params, features(BATCH, frames=42), IDS)


def test_cached_steps_match_the_full_forward(small):
    _, _, (_, graphdef, params) = small
    x = features(BATCH, seed=5)
    encode = jax.jit(init_cache, static_argnums=0, static_argnames="capacity")
    cache = encode(graphdef, params, x, capacity=IDS.shape[1])
    step = jax.jit(make_step(graphdef, params))
    pieces = []
    # Prefill 3 (empty cache), then 2 at once into a non-empty cache, then one at a time.
    for lo, hi in [(0, 3), (3, 5)] + [(i, i + 1) for i in range(5, IDS.shape[1])]:
        logits, cache = step(jnp.asarray(IDS[:, lo:hi]), cache)
        pieces.append(logits)
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), forward(graphdef, params, x, IDS), atol=1e-4)
    np.testing.assert_array_equal(cache["length"], [IDS.shape[1]] * BATCH)


def test_cache_encodes_windows_as_the_batched_encoder(small):
    # On CPU init_cache runs the encoder one window at a time; each row keeps its own frame mask.
    _, _, (_, graphdef, params) = small
    x = features(BATCH, seed=7)
    mask = jnp.asarray(np.arange(40)[None, :] < np.array([[40], [28], [12]]))
    cache = jax.jit(init_cache, static_argnums=0, static_argnames="capacity")(
        graphdef, params, jnp.asarray(x), capacity=4, frame_mask=mask
    )
    model = nnx.merge(graphdef, params)
    encoded, encoder_mask = model.encode(jnp.asarray(x), mask)
    np.testing.assert_array_equal(cache["cross_mask"], encoder_mask)
    for (k, v), (k_stored, v_stored) in zip(model.decoder.cross_keys_values(encoded), cache["cross"]):
        np.testing.assert_allclose(jnp.transpose(k, (0, 2, 1, 3)), k_stored, atol=1e-5)
        np.testing.assert_allclose(jnp.transpose(v, (0, 2, 3, 1)), v_stored, atol=1e-5)


def greedy_by_rerunning(graphdef, params, x, eos):
    """Greedy tokens [B, NEW] after PREFIX by running the full model (no cache) at every step on
    the sequence so far, padded to IDS' length (causal attention never reads the padding)."""
    p = len(PREFIX)
    ids = np.full(IDS.shape, eos)
    ids[:, :p] = PREFIX
    done = np.zeros(x.shape[0], bool)
    for i in range(NEW):
        nxt = np.where(done, eos, np.argmax(np.asarray(forward(graphdef, params, x, ids)[:, p - 1 + i]), -1))
        done |= nxt == eos
        ids[:, p + i] = nxt
    return ids[:, p:]


@pytest.fixture(scope="module")
def decoding(small):
    """(torch model, graphdef, params, config with an eos the model emits, features, greedy reference).

    The eos is the token row 0 emits third, so rows end at different steps."""
    _, model, (config, graphdef, params) = small
    x = features(BATCH, seed=6)
    eos = int(greedy_by_rerunning(graphdef, params, x, EOT)[0, 2])
    config = dataclasses.replace(config, eos_token_id=eos)
    return model, graphdef, params, config, x, greedy_by_rerunning(graphdef, params, x, eos)


def test_greedy_matches_rerunning_the_model_and_transformers_generate(decoding):
    model, graphdef, params, config, x, expected = decoding
    eos = config.eos_token_id
    out = generate(graphdef, params, config, x, PREFIX, max_new_tokens=NEW)
    np.testing.assert_array_equal(out.tokens, expected)
    assert out.lengths[0] <= 2 and int(out.lengths.max()) > int(out.lengths.min())
    hf = transformers.GenerationMixin.generate(
        model, input_features=torch.tensor(x), decoder_input_ids=torch.tensor(np.tile(PREFIX, (BATCH, 1))),
        max_new_tokens=NEW, do_sample=False, num_beams=1, eos_token_id=eos, pad_token_id=eos,
    )[:, len(PREFIX) :].numpy()  # fmt: skip
    np.testing.assert_array_equal(out.tokens[:, : hf.shape[1]], hf)
    assert (np.asarray(out.tokens[:, hf.shape[1] :]) == eos).all()


def test_beam_search_one_is_greedy_and_scores_rescore_with_the_full_model(decoding):
    _, graphdef, params, config, x, expected = decoding
    beam1 = generate(graphdef, params, config, x, PREFIX, max_new_tokens=NEW, beam_size=1)
    np.testing.assert_array_equal(beam1.tokens, expected)
    beam = generate(graphdef, params, config, x, PREFIX, max_new_tokens=NEW, beam_size=3)
    # The cache is reordered between beams: the reported score must be what the full model
    # assigns to the returned hypothesis (eos-padded, which causal attention never reads).
    ids = np.concatenate([np.tile(PREFIX, (BATCH, 1)), np.asarray(beam.tokens)], 1)
    log_probs = np.asarray(jax.nn.log_softmax(forward(graphdef, params, x, ids)[:, len(PREFIX) - 1 : -1]))
    for row in range(BATCH):
        length = int(beam.lengths[row])
        scored = min(length + 1, NEW)  # the eos counts when there is one
        total = log_probs[row, np.arange(scored), np.asarray(beam.tokens[row, :scored])].sum()
        np.testing.assert_allclose(beam.scores[row], length_normalised(total, length, None), rtol=1e-4)


def test_suppression_sampling_and_errors(decoding):
    _, graphdef, params, config, x, plain = decoding
    banned = sorted(set(plain[:, 1].tolist()) - set(plain[:, 0].tolist()) - {config.eos_token_id})
    first = sorted(set(plain[:, 0].tolist()))
    # Sampling (one compile serves all three calls): suppressed tokens are never drawn.
    options = dict(max_new_tokens=NEW, temperature=1.0, suppress_tokens=banned, begin_suppress_tokens=first)
    a = generate(graphdef, params, config, x, PREFIX, key=jax.random.key(1), **options)
    assert banned and not np.isin(np.asarray(a.tokens), banned).any()
    assert not np.isin(np.asarray(a.tokens[:, 0]), first).any()
    b = generate(graphdef, params, config, x, PREFIX, key=jax.random.key(1), **options)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    broken = jax.tree.map(lambda v: v, params)
    broken["decoder"]["layer_norm"]["scale"].set_value(np.full((64,), np.nan, np.float32))
    with pytest.raises(FloatingPointError, match="non-finite logits"):
        generate(graphdef, broken, config, x, PREFIX, key=jax.random.key(1), **options)
    assert np.isfinite(np.asarray(params["decoder"]["layer_norm"]["scale"].get_value())).all()
    with pytest.raises(ValueError, match="explicit key"):
        generate(graphdef, params, config, x, PREFIX, temperature=1.0)
    with pytest.raises(ValueError, match="max_new_tokens must be in"):
        generate(graphdef, params, config, x, PREFIX, max_new_tokens=29)
    with pytest.raises(ValueError, match="not both"):
        generate(graphdef, params, config, x, PREFIX, beam_size=2, temperature=0.5, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"\[B, 16, frames\]"):
        generate(graphdef, params, config, features(1, mels=8), PREFIX)


def test_language_detection_and_prefix(small):
    _, _, (config, graphdef, params) = small
    tokens = special_tokens(config, num_timestamps=6, multilingual=True)
    assert decoder_prefix(tokens, language="en") == PREFIX
    x = features(BATCH, seed=9)
    logits = forward(graphdef, params, x, IDS)[:, 0, EN : ZH + 1]  # every row of IDS starts with sot
    assert detect_language(graphdef, params, x, tokens) == [("en", "zh")[i] for i in np.argmax(logits, -1)]


def test_stitch_windows_and_window_starts():
    windows = [[1, 2, 3, 4, 5, 6], [5, 6, 7, 8], [8, 9]]
    assert stitch_windows(windows, min_overlap_tokens=1) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    # The longest common run wins over a shorter, earlier one; a one-token match is not trusted by default.
    assert stitch_windows([[1, 2, 9, 3, 4, 5], [4, 5, 6, 7]]) == [1, 2, 9, 3, 4, 5, 6, 7]
    assert stitch_windows([[1, 2, 3], [3, 4]]) == [1, 2, 3, 3, 4]
    assert stitch_windows([[1, 2, 3], [9, 8]]) == [1, 2, 3, 9, 8]
    assert stitch_windows([[], [1, 2]]) == [1, 2]
    assert window_starts(100, 30, 25) == [0, 25, 50, 75]
    assert window_starts(30, 30, 25) == [0]
    assert window_starts(10, 30, 25) == [0]
    with pytest.raises(ValueError, match="stride"):
        window_starts(100, 30, 31)


@pytest.fixture(scope="module")
def full_window(tmp_path_factory):
    """A Whisper with the real front end: 80 mels, 3000-frame (30 s) windows."""
    path = tmp_path_factory.mktemp("whisper_80")
    model = build_hf_whisper(path, num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
                             encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                             decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=24)  # fmt: skip
    return path, model, import_transformers_checkpoint(path)


def test_waveform_to_logits_matches_transformers_feature_extractor_and_model(full_window):
    _, model, (config, graphdef, params) = full_window
    audio = 0.1 * np.random.default_rng(10).normal(size=12345).astype(np.float32)
    extractor = transformers.WhisperFeatureExtractor(feature_size=80)
    hf_features = extractor(audio, sampling_rate=16000, return_tensors="np").input_features
    ours = jnp.swapaxes(log_mel(audio[None], "whisper_80", pad_or_trim=True), 1, 2)
    np.testing.assert_allclose(ours, hf_features, atol=1e-4)
    ids = IDS[:1]
    np.testing.assert_allclose(forward(graphdef, params, ours, ids), torch_logits(model, hf_features, ids), atol=2e-4)


def test_long_audio_is_windowed_and_stitched(full_window):
    _, _, (config, graphdef, params) = full_window
    tokens = special_tokens(config, num_timestamps=6, multilingual=True)
    audio = 0.1 * np.random.default_rng(11).normal(size=16000 * 40).astype(np.float32)
    options = dict(batch_size=2, max_new_tokens=8, min_overlap_tokens=1)
    result = transcribe(graphdef, params, config, audio, PREFIX, tokens, **options)
    # Each window alone (at most 30 s: one window), then stitched, gives the same text.
    windows = [transcribe(graphdef, params, config, audio[s : s + 480000], PREFIX, tokens, **options)
               for s in window_starts(audio.size, 480000, 400000)]  # fmt: skip
    assert len(windows) == 2
    assert result == stitch_windows(windows, min_overlap_tokens=1)
    assert all(t < EOT for t in result)
    # The same batch shape and options as transcribe's, so the compiled decoder is reused.
    first_window = np.stack([audio[:480000], np.zeros(480000, np.float32)])
    short = generate(graphdef, params, config, jnp.swapaxes(log_mel(first_window, "whisper_80"), 1, 2), PREFIX,
                     max_new_tokens=8, suppress_tokens=range(SOT, 96))  # fmt: skip
    assert windows[0] == [int(t) for t in np.asarray(short.tokens[0, : short.lengths[0]]) if t < EOT]
