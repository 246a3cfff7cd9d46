"""Vocos checkpoint import: the waveform of the ``vocos`` package's backbone + ISTFT head (random weights,
saved as a Vocos directory) within 1e-4, and errors that name the tensors and the unsupported parts.

The ``vocos`` package imports torchaudio at package import (its feature extractors, and two mel-scale
helpers in ``vocos.heads``), and no torchaudio wheel loads with the torch CI installs; the modules
compared here (``vocos.models``, ``vocos.heads``, ``vocos.spectral_ops``) do not use it, so the test
loads them without the package ``__init__`` and with those two helpers stubbed.
"""

import importlib
import importlib.util
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from jaxspeech.models import neural_vocoder, vocoder, vocos_import
from jaxspeech.models.checkpoint_import import CheckpointError

torch = pytest.importorskip("torch")

CONFIG = {
    "feature_extractor": {"class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
                          "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100,
                                        "padding": "center"}},
    "backbone": {"class_path": "vocos.models.VocosBackbone",
                 "init_args": {"input_channels": 100, "dim": 32, "intermediate_dim": 48, "num_layers": 2}},
    "head": {"class_path": "vocos.heads.ISTFTHead",
             "init_args": {"dim": 32, "n_fft": 1024, "hop_length": 256, "padding": "same"}},
}  # fmt: skip


@pytest.fixture(scope="module")
def vocos_modules():
    spec = importlib.util.find_spec("vocos")
    if spec is None:
        pytest.skip("the vocos package is not installed")
    saved = {name: sys.modules.get(name) for name in ("vocos", "torchaudio", "torchaudio.functional",
                                                       "torchaudio.functional.functional")}
    package = types.ModuleType("vocos")
    package.__path__ = list(spec.submodule_search_locations)
    helpers = types.ModuleType("torchaudio.functional.functional")
    helpers._hz_to_mel = helpers._mel_to_hz = None  # only IMDCTCosHead uses them
    sys.modules.update({"vocos": package, "torchaudio": types.ModuleType("torchaudio"),
                        "torchaudio.functional": types.ModuleType("torchaudio.functional"),
                        "torchaudio.functional.functional": helpers})
    try:
        yield importlib.import_module("vocos.models"), importlib.import_module("vocos.heads")
    finally:
        for name in [n for n in sys.modules if n == "vocos" or n.startswith(("vocos.", "torchaudio"))]:
            del sys.modules[name]
        sys.modules.update({name: module for name, module in saved.items() if module is not None})


def saved_vocos(vocos_modules, directory, seed=0):
    """A random Vocos saved as config.yaml + pytorch_model.bin: unit-scale activations (weights
    ~ 1/sqrt(fan in), so the exact GELU is told from its tanh form), random biases, norms and layer scales."""
    models, heads = vocos_modules
    torch.manual_seed(seed)
    backbone = models.VocosBackbone(**CONFIG["backbone"]["init_args"])
    head = heads.ISTFTHead(**CONFIG["head"]["init_args"])
    with torch.no_grad():
        for module in (backbone, head):
            for name, tensor in module.named_parameters():
                if name.endswith("weight") and "norm" not in name:
                    tensor.normal_(0.0, tensor[0].numel() ** -0.5)
                else:
                    tensor.copy_(torch.randn_like(tensor) * 0.1 + (1.0 if name.endswith("norm.weight") else 0.0))
    state = {**{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
             **{f"head.{k}": v for k, v in head.state_dict().items()},
             "feature_extractor.mel_spec.spectrogram.window": torch.hann_window(1024)}  # fmt: skip
    torch.save(state, directory / "pytorch_model.bin")
    (directory / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    return backbone.eval(), head.eval()


def test_waveform_matches_the_vocos_package(vocos_modules, tmp_path):
    backbone, head = saved_vocos(vocos_modules, tmp_path)
    config, graphdef, params = vocos_import.import_vocos_checkpoint(tmp_path)
    assert config.preset == "vocos_24k" and (config.dim, config.num_layers, config.n_fft) == (32, 2, 1024)
    mel = np.random.default_rng(0).normal(-3.0, 1.5, (2, 40, 100)).astype(np.float32)
    with torch.no_grad():
        want = head(backbone(torch.from_numpy(mel).transpose(1, 2))).numpy()
    got = np.asarray(jax.jit(vocoder.apply, static_argnums=0)(graphdef, params, jnp.asarray(mel),
                                                                jnp.ones((2, 40), bool)))
    assert got.shape == want.shape == (2, 40 * 256)
    np.testing.assert_allclose(got, want, atol=2e-6)  # peak 0.34; GELU's tanh form would be 1.2e-5 off
    vocode = neural_vocoder.imported_vocoder(str(tmp_path), preset="vocos_24k")  # what --vocoder DIRECTORY runs
    np.testing.assert_allclose(vocode(mel[1]), want[1], atol=2e-6)
    with pytest.raises(ValueError, match="vocodes 'vocos_24k' mels, not 'tts_22k'"):
        neural_vocoder.imported_vocoder(str(tmp_path), preset="tts_22k")


def test_mismatched_and_unsupported_checkpoints_are_named(vocos_modules, tmp_path):
    saved_vocos(vocos_modules, tmp_path)
    state = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    arrays = {k: v.numpy() for k, v in state.items()}
    config = vocos_import.vocoder_config(CONFIG)
    del arrays["backbone.convnext.1.gamma"]
    arrays["head.out.weight"] = arrays["head.out.weight"][:, :16]
    arrays["backbone.extra.weight"] = np.zeros(3)
    with pytest.raises(CheckpointError) as error:
        vocos_import.params_from_state_dict(arrays, config)
    message = str(error.value)
    assert "missing tensors: backbone.convnext.1.gamma" in message
    assert "head.out.weight expected (1026, 32) got (1026, 16)" in message
    assert "unexpected tensors: backbone.extra.weight" in message
    adanorm = {**CONFIG, "backbone": {**CONFIG["backbone"], "init_args": {**CONFIG["backbone"]["init_args"],
                                                                         "adanorm_num_embeddings": 4}}}
    with pytest.raises(CheckpointError, match="AdaLayerNorm"):
        vocos_import.vocoder_config(adanorm)
    imdct = {**CONFIG, "head": {"class_path": "vocos.heads.IMDCTCosHead", "init_args": {}}}
    with pytest.raises(CheckpointError, match="head must be ISTFTHead"):
        vocos_import.vocoder_config(imdct)
    with pytest.raises(FileNotFoundError, match="config.yaml and pytorch_model.bin"):
        vocos_import.import_vocos_checkpoint(tmp_path / "nowhere")
