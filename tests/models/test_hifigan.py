"""HiFi-GAN: generator and discriminators in parity with Matcha-TTS's PyTorch ones (``matcha.hifigan.models``)
on randomly initialised weight- and spectral-normed checkpoints, the GAN losses with its loss code, padding,
and import errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxspeech.losses import gan
from jaxspeech.models import hifigan

matcha_models = pytest.importorskip("matcha.hifigan.models")

# Small versions of the two published block types (V1 uses "1", V3 uses "2"); matcha fixes 80 mels.
SMALL = {
    "1": hifigan.HifiGanConfig(num_mels=80, upsample_rates=(4, 2), upsample_kernel_sizes=(8, 4),
                               upsample_initial_channel=32, resblock="1", resblock_kernel_sizes=(3, 5),
                               resblock_dilation_sizes=((1, 3, 5), (1, 3, 5))),
    "2": hifigan.HifiGanConfig(num_mels=80, upsample_rates=(4, 2), upsample_kernel_sizes=(8, 4),
                               upsample_initial_channel=32, resblock="2", resblock_kernel_sizes=(3, 5),
                               resblock_dilation_sizes=((1, 2), (2, 6))),
}  # fmt: skip


def torch_generator(config: hifigan.HifiGanConfig, seed: int) -> torch.nn.Module:
    """Matcha's generator with random weights (also the biases and weight-norm gains, which its
    initialisation leaves at trivial values, so that every tensor is checked)."""
    torch.manual_seed(seed)
    h = type("H", (), {**dataclasses.asdict(config), "resblock": config.resblock})
    model = matcha_models.Generator(h).eval()
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith(("bias", "weight_g", "original0")):
                gain = "bias" not in name
                tensor.copy_(torch.rand_like(tensor) * 0.5 + 0.1 if gain else torch.randn_like(tensor) * 0.1)
    return model


def torch_waveform(model: torch.nn.Module, mel: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(mel).transpose(1, 2)).squeeze(1).numpy()


@pytest.mark.parametrize("kind", ["1", "2"])
def test_waveform_matches_matcha_generator_from_its_saved_checkpoint(kind, tmp_path):
    config = SMALL[kind]
    model = torch_generator(config, seed=int(kind))
    torch.save({"generator": model.state_dict()}, tmp_path / "generator")
    mel = np.random.default_rng(0).standard_normal((2, 11, config.num_mels)).astype(np.float32)
    _, graphdef, params = hifigan.import_hifigan_checkpoint(tmp_path / "generator", config)
    ours = jax.jit(hifigan.apply, static_argnums=0)(graphdef, params, jnp.asarray(mel))
    assert ours.shape == (2, 11 * config.hop)
    np.testing.assert_allclose(ours, torch_waveform(model, mel), atol=1e-4)


def test_weight_norm_removed_and_parametrized_state_dicts_import_alike():
    config = SMALL["1"]
    model = torch_generator(config, seed=3)
    mel = np.random.default_rng(1).standard_normal((1, 7, config.num_mels)).astype(np.float32)
    want = torch_waveform(model, mel)
    weight_g = {k: v.numpy() for k, v in model.state_dict().items()}
    model.remove_weight_norm()
    plain = {k: v.numpy() for k, v in model.state_dict().items()}
    renamed = {".weight_g": ".parametrizations.weight.original0", ".weight_v": ".parametrizations.weight.original1"}
    parametrized = {}
    for name, value in weight_g.items():
        for old, new in renamed.items():
            name = name.replace(old, new)
        parametrized[name] = value
    for state_dict in (plain, parametrized):
        graphdef, params = hifigan.params_from_state_dict(state_dict, config)
        np.testing.assert_allclose(hifigan.apply(graphdef, params, jnp.asarray(mel)), want, atol=1e-4)


def test_a_padded_batch_vocodes_each_row_as_it_would_alone():
    config = SMALL["2"]
    state_dict = {k: v.numpy() for k, v in torch_generator(config, seed=4).state_dict().items()}
    graphdef, params = hifigan.params_from_state_dict(state_dict, config)
    rng = np.random.default_rng(2)
    short, long = (jnp.asarray(rng.standard_normal((1, n, config.num_mels)), jnp.float32) for n in (6, 10))
    batch = jnp.concatenate([jnp.pad(short, ((0, 0), (0, 4), (0, 0)), constant_values=3.0), long])
    mask = jnp.arange(10)[None] < jnp.array([[6], [10]])
    out = hifigan.apply(graphdef, params, batch, mask)
    np.testing.assert_allclose(out[0, : 6 * config.hop], hifigan.apply(graphdef, params, short)[0], atol=1e-5)
    assert not np.asarray(out[0, 6 * config.hop :]).any()
    np.testing.assert_allclose(out[1], hifigan.apply(graphdef, params, long)[0], atol=1e-5)


def test_checkpoints_of_another_architecture_name_the_tensors():
    state_dict = {k: v.numpy() for k, v in torch_generator(SMALL["1"], seed=5).state_dict().items()}
    names = r"missing tensors: resblocks\.0\.convs\.0\.bias.*unexpected tensors: resblocks\.0\.convs1"
    with pytest.raises(hifigan.CheckpointError, match=names):
        hifigan.params_from_state_dict(state_dict, dataclasses.replace(SMALL["1"], resblock="2"))
    wider = dataclasses.replace(SMALL["1"], upsample_initial_channel=64)
    with pytest.raises(hifigan.CheckpointError, match=r"conv_pre\.weight expected \(64, 80, 7\) got \(32, 80, 7\)"):
        hifigan.params_from_state_dict(state_dict, wider)
    with pytest.raises(ValueError, match="upsample kernel 3 must be >= its rate 4"):
        dataclasses.replace(SMALL["1"], upsample_kernel_sizes=(3, 4))


def test_published_configs_read_from_config_json():
    v3 = {"resblock": "2", "upsample_rates": [8, 8, 4], "upsample_kernel_sizes": [16, 16, 8],
          "upsample_initial_channel": 256, "resblock_kernel_sizes": [3, 5, 7],
          "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]], "num_mels": 80, "segment_size": 8192}  # fmt: skip
    assert hifigan.HifiGanConfig.from_dict(v3) == hifigan.V3
    assert hifigan.V1.hop == hifigan.V2.hop == hifigan.V3.hop == 256


def randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``module`` in eval mode with random biases and weight-norm gains, and spectral norm's stored
    vectors converged by power iteration (as training leaves them: random ones underestimate the
    norm, and the features grow ~100x per layer until float32 rounding dominates the comparison),
    so that folding every reparametrisation is checked at a realistic scale."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.named_parameters():
            if name.endswith("bias"):
                tensor.copy_(torch.randn_like(tensor) * 0.1)
            elif name.endswith("weight_g"):
                tensor.copy_(torch.rand_like(tensor) * 0.5 + 0.1)
        for layer in module.modules():
            if hasattr(layer, "weight_u"):  # torch.nn.utils.spectral_norm's buffers
                matrix = layer.weight_orig.reshape(layer.weight_orig.shape[0], -1)
                u, v = layer.weight_u, layer.weight_v
                for _ in range(50):
                    v.copy_(torch.nn.functional.normalize(matrix.T @ u, dim=0))
                    u.copy_(torch.nn.functional.normalize(matrix @ v, dim=0))
    return module.eval()


@pytest.mark.parametrize("kind", ["mpd", "msd"])
def test_discriminators_match_matcha_scores_and_feature_maps(kind):
    """Both waveforms odd-length (the period discriminators reflect-pad); MSD's first scale is
    spectral-normed, the others weight-normed."""
    torch.manual_seed(7)
    reference = randomised({"mpd": matcha_models.MultiPeriodDiscriminator,
                            "msd": matcha_models.MultiScaleDiscriminator}[kind](), seed=8)  # fmt: skip
    state_dict = {k: v.numpy() for k, v in reference.state_dict().items()}
    graphdef, params = hifigan.discriminator_params_from_state_dict(state_dict, kind)
    real, fake = (np.random.default_rng(s).uniform(-0.5, 0.5, (2, 677)).astype(np.float32) for s in (9, 10))
    with torch.no_grad():
        want_real, want_fake, maps_real, _ = reference(torch.from_numpy(real)[:, None], torch.from_numpy(fake)[:, None])
    ours = jax.jit(lambda p, w: nnx.merge(graphdef, p)(w))

    def close(got, want):  # float32 sums over up to 41 x 64 terms of activations ~1e3: relative to the map's scale
        assert np.abs(np.asarray(got) - want).max() <= 1e-5 * np.abs(want).max() + 1e-5
    got_real, got_fake = ours(params, jnp.asarray(real)), ours(params, jnp.asarray(fake))
    assert len(got_real) == len(want_real)
    for (scores, maps), want, want_maps in zip(got_real, want_real, maps_real):
        close(scores, want.numpy())
        for got_map, want_map in zip(maps, want_maps, strict=True):
            want_map = want_map.numpy()  # [B, C, T'] or [B, C, T', p] -> ours [B (* p), T', C]
            if want_map.ndim == 4:
                want_map = np.transpose(want_map, (0, 3, 2, 1)).reshape(-1, want_map.shape[2], want_map.shape[1])
            else:
                want_map = np.swapaxes(want_map, 1, 2)
            close(got_map, want_map)
    for (scores, _), want in zip(got_fake, want_fake):
        close(scores, want.numpy())


def test_gan_losses_match_hifigan_code():
    rng = np.random.default_rng(11)
    real = [rng.standard_normal(s).astype(np.float32) for s in ((2, 30), (2, 12))]
    fake = [rng.standard_normal(s).astype(np.float32) for s in ((2, 30), (2, 12))]
    maps_real = [[rng.standard_normal((2, 5, 3)).astype(np.float32) for _ in range(3)] for _ in range(2)]
    maps_fake = [[rng.standard_normal((2, 5, 3)).astype(np.float32) for _ in range(3)] for _ in range(2)]
    as_torch = lambda tree: jax.tree.map(torch.from_numpy, tree)  # noqa: E731
    want_d = matcha_models.discriminator_loss(as_torch(real), as_torch(fake))[0]
    want_g = matcha_models.generator_loss(as_torch(fake))[0]
    want_fm = matcha_models.feature_loss(as_torch(maps_real), as_torch(maps_fake))
    np.testing.assert_allclose(gan.discriminator_loss(real, fake), want_d.item(), rtol=1e-5)
    np.testing.assert_allclose(gan.generator_adversarial_loss(fake), want_g.item(), rtol=1e-5)
    np.testing.assert_allclose(gan.feature_matching_loss(maps_real, maps_fake), want_fm.item(), rtol=1e-5)
    # The generator matches the real features: they carry no gradient.
    grads = jax.grad(gan.feature_matching_loss, argnums=(0, 1))(maps_real, maps_fake)
    assert not any(np.asarray(g).any() for g in jax.tree.leaves(grads[0]))
    assert all(np.asarray(g).any() for g in jax.tree.leaves(grads[1]))
