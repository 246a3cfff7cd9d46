"""Matcha-TTS acoustic checkpoint import: encoder means, durations, the decoder's vector field and Euler
synthesis within 1e-4 of the ``matcha-tts`` package's ``MatchaTTS`` (random weights; loaded without its
training stack by ``matcha_reference``), the symbol table and tokens of Matcha's front end, the
Lightning ``.ckpt`` reader and its errors, and ``jaxspeech synthesize --checkpoint``.
"""

import datetime
import importlib
import importlib.util
import json
import os
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.models import tts
from jaxspeech.models.checkpoint_import import CheckpointError
from jaxspeech.models.tts import matcha_import, matcha_reference
from jaxspeech.samplers import sample_ode
from jaxspeech.text.phrasing import phrase

torch = pytest.importorskip("torch")
for _package in ("matcha", "diffusers", "einops", "conformer"):
    pytest.importorskip(_package)

N_VOCAB = len(matcha_import.MATCHA_SYMBOLS)
HPARAMS = dict(
    n_vocab=N_VOCAB, n_spks=1, spk_emb_dim=64, n_feats=80, out_size=None, prior_loss=True,
    use_precomputed_durations=False, data_statistics={"mel_mean": -5.5, "mel_std": 2.1},
    encoder=dict(encoder_type="RoPE Encoder",
                 encoder_params=dict(n_feats=80, n_channels=32, filter_channels=64, filter_channels_dp=32, n_heads=2,
                                     n_layers=2, kernel_size=3, p_dropout=0.1, spk_emb_dim=64, n_spks=1, prenet=True),
                 duration_predictor_params=dict(filter_channels_dp=32, kernel_size=3, p_dropout=0.1)),
    decoder=dict(channels=[32, 48], dropout=0.05, attention_head_dim=16, n_blocks=1, num_mid_blocks=2, num_heads=2,
                 act_fn="snakebeta"),
    cfm=dict(name="CFM", solver="euler", sigma_min=1e-4),
)  # fmt: skip


@pytest.fixture(scope="module")
def matcha_tts():
    with matcha_reference.matcha_modules() as module:
        yield module


def random_matcha(matcha_tts, hparams=HPARAMS, seed=0):
    """A MatchaTTS in eval mode with every weight random (norm scales near 1), so a wrong mapping shows."""
    torch.manual_seed(seed)
    model = matcha_reference.matcha_model(matcha_tts, hparams)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            is_scale = name.endswith(("gamma", "norm1.weight", "norm3.weight", "block.1.weight"))
            if tensor.ndim > 1:
                tensor.normal_(0.0, tensor[0].numel() ** -0.5)
            else:
                tensor.copy_(torch.randn_like(tensor) * 0.1 + (1.0 if is_scale else 0.0))
    return model.eval()


@pytest.fixture(scope="module")
def imported(matcha_tts):
    model = random_matcha(matcha_tts)
    config = matcha_import.model_config(HPARAMS)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    graphdef, params = matcha_import.params_from_state_dict(state, config)
    return model, config, graphdef, params


def test_symbols_are_matchas():
    path = os.path.join(importlib.util.find_spec("matcha").submodule_search_locations[0], "text", "symbols.py")
    spec = importlib.util.spec_from_file_location("matcha_symbols", path)
    symbols = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(symbols)
    assert list(matcha_import.MATCHA_SYMBOLS) == symbols.symbols


def test_tokenizer_gives_matchas_ids_with_blanks():
    phonemes = "ðə kˈɛɹfəl dˈɑːktɚ wˈɑːtʃt ɐ tˈaʊəl, ɐ plˈeɪt ænd bˈʌʔn̩z."
    ids = {s: i for i, s in enumerate(matcha_import.MATCHA_SYMBOLS)}
    expected = np.zeros(2 * len(phonemes) + 1, np.int32)
    expected[1::2] = [ids[c] for c in phonemes]  # Matcha: text_to_sequence, then intersperse(seq, 0)
    np.testing.assert_array_equal(matcha_import.matcha_tokenizer().encode(phrase(phonemes).text), expected)


def test_encoder_means_and_durations_match(imported):
    model, config, graphdef, params = imported
    lengths = [17, 11]  # padded rows: both encoders ignore padding
    tokens = np.random.default_rng(0).integers(1, N_VOCAB, (2, 17))
    with torch.no_grad():
        mu, logw, _ = model.encoder(torch.tensor(tokens), torch.tensor(lengths))
    mask = np.arange(17)[None] < np.asarray(lengths)[:, None]
    out = tts.encode(graphdef, params, jnp.asarray(tokens), jnp.asarray(mask), jnp.zeros(2, jnp.int32))
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(np.asarray(out["mu"])[row, :length], mu.numpy()[row, :, :length].T, atol=1e-4)
        np.testing.assert_allclose(np.asarray(out["log_durations"])[row, :length], logw.numpy()[row, 0, :length],
                                   atol=1e-4)


def _decoder_inputs(frames=24, seed=1):
    rng = np.random.default_rng(seed)
    x, mu = (rng.standard_normal((2, frames, 80)).astype(np.float32) for _ in range(2))
    return x, mu, np.ones((2, frames), bool)  # no padding: Matcha's GroupNorm and attention mask leak it


def test_vector_field_matches(imported):
    model, config, graphdef, params = imported
    x, mu, mask = _decoder_inputs()
    t = np.asarray([0.3, 0.85], np.float32)
    with torch.no_grad():
        reference = model.decoder.estimator(torch.tensor(x).transpose(1, 2), torch.ones(2, 1, x.shape[1]),
                                            torch.tensor(mu).transpose(1, 2), torch.tensor(t)).transpose(1, 2)
    net = tts.decoder_network(graphdef, params)
    ours = net(jnp.asarray(x), jnp.asarray(t), {"mu": jnp.asarray(mu), "speaker": jnp.zeros(2, jnp.int32),
                                                  "mask": jnp.asarray(mask)})
    assert float(np.abs(reference.numpy()).mean()) > 0.1  # a field worth comparing
    np.testing.assert_allclose(np.asarray(ours), reference.numpy(), atol=1e-4)


def test_euler_synthesis_from_the_same_noise_matches(imported):
    model, config, graphdef, params = imported
    z, mu, mask = _decoder_inputs(seed=2)
    with torch.no_grad():
        reference = model.decoder.solve_euler(torch.tensor(z).transpose(1, 2), torch.linspace(0, 1, 5),
                                              torch.tensor(mu).transpose(1, 2), torch.ones(2, 1, z.shape[1]),
                                              None, None).transpose(1, 2)
    cond = {"mu": jnp.asarray(mu), "speaker": jnp.zeros(2, jnp.int32), "mask": jnp.asarray(mask)}
    ours = sample_ode(tts.decoder_network(graphdef, params), None, jnp.asarray(z), cond=cond, steps=4, method="euler")
    np.testing.assert_allclose(np.asarray(ours), reference.numpy(), atol=1e-4)


def test_config_reads_the_hyperparameters():
    namespaces = json.loads(json.dumps(HPARAMS), object_hook=lambda d: SimpleNamespace(**d))
    c = matcha_import.model_config(namespaces)  # namespaces, dicts and OmegaConf alike
    assert (c.encoder.d_model, c.encoder.ff_mult, c.encoder.architecture) == (32, 2, "matcha")
    assert (c.decoder.unet.channels, c.decoder.unet.head_dim, c.decoder.unet.time_dim) == ((32, 48), 16, 128)
    assert (c.mel_mean, c.mel_std, c.intonation.num_tokens, c.decoder.speaker_dim) == (-5.5, 2.1, 0, 0)


@pytest.mark.parametrize("change, named", [
    (dict(n_spks=4), "n_spks=4"),
    (dict(decoder={**HPARAMS["decoder"], "act_fn": "snake"}), "act_fn='snake'"),
    (dict(decoder={**HPARAMS["decoder"], "down_block_type": "conformer"}), "conformer"),
])  # fmt: skip
def test_unsupported_checkpoints_are_named(change, named):
    with pytest.raises(CheckpointError, match=named):
        matcha_import.model_config({**HPARAMS, **change})


def test_tensor_errors_name_missing_and_misshaped(imported):
    model, config, _, _ = imported
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    del state["decoder.estimator.final_proj.bias"]
    state["encoder.proj_m.weight"] = np.zeros((80, 31, 1), np.float32)
    with pytest.raises(CheckpointError, match=r"missing tensors: decoder\.estimator\.final_proj\.bias.*"
                                              r"encoder\.proj_m\.weight expected \(80, 32, 1\) got \(80, 31, 1\)"):
        matcha_import.params_from_state_dict(state, config)


def test_lightning_checkpoint_with_omegaconf_hyperparameters(imported, tmp_path):
    omegaconf = pytest.importorskip("omegaconf")
    model, config, _, params = imported
    path = tmp_path / "matcha.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": omegaconf.OmegaConf.create(HPARAMS),
                "epoch": 3, "pytorch-lightning_version": "2.1.0"}, path)
    loaded_config, _, loaded = matcha_import.import_matcha_checkpoint(path)
    assert loaded_config.to_dict() == config.to_dict()
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_checkpoint_with_other_objects_is_refused(tmp_path):
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": HPARAMS, "saved_on": datetime.date(2026, 1, 1)}, path)
    with pytest.raises(CheckpointError, match="other than tensors and configs, not loaded: datetime.date"):
        matcha_import.import_matcha_checkpoint(path)


def test_synthesize_command_runs_a_matcha_checkpoint(matcha_tts, tmp_path):
    """End to end through the CLI: eSpeak NG phonemes -> Matcha's ids -> the imported model; the audio
    is as long as the package's own durations for those ids say (ceil(exp(logw)) frames x hop 256)."""
    import soundfile

    from jaxspeech.cli import main
    from jaxspeech.data import espeak

    text = "Was the clock shiny?"
    model = random_matcha(matcha_tts)
    path = tmp_path / "matcha.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": HPARAMS}, path)
    out = tmp_path / "out.wav"
    assert main(["synthesize", "--checkpoint", str(path), "--text", text, "--out", str(out), "--steps", "2"]) == 0
    waveform, rate = soundfile.read(out)
    ids = matcha_import.matcha_tokenizer().encode(phrase(espeak.phonemize(text)).text)
    with torch.no_grad():
        _, logw, _ = model.encoder(torch.tensor(ids)[None], torch.tensor([len(ids)]))
    frames = int(torch.ceil(torch.exp(logw)).sum())
    assert rate == 22050 and len(waveform) == frames * 256 and np.isfinite(waveform).all()


def test_synthesize_command_names_a_missing_checkpoint(tmp_path):
    from jaxspeech.cli import main

    with pytest.raises(SystemExit, match="no such checkpoint file"):
        main(["synthesize", "--checkpoint", str(tmp_path / "none.ckpt"), "--text", "Hi.", "--out", "x.wav",
              "--steps", "2"])
