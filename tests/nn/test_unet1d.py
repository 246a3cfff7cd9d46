import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxspeech.nn.unet1d import UNet1D, masked_group_norm


def test_masked_group_norm_matches_torch_and_ignores_padding():
    x = jax.random.normal(jax.random.key(0), (2, 10, 8)) * 3 + 1
    scale = jax.random.normal(jax.random.key(1), (8,))
    bias = jax.random.normal(jax.random.key(2), (8,))
    full = masked_group_norm(x, jnp.ones((2, 10), bool), 4, scale, bias)
    norm = torch.nn.GroupNorm(4, 8, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor(np.asarray(scale)))
        norm.bias.copy_(torch.tensor(np.asarray(bias)))
        expected = norm(torch.tensor(np.asarray(x)).transpose(1, 2)).transpose(1, 2).numpy()
    np.testing.assert_allclose(full, expected, atol=1e-4)
    # With padding: the valid frames are normalised by their own statistics only.
    mask = jnp.arange(10)[None] < jnp.array([[10], [6]])
    padded = jnp.where(mask[..., None], x, 1e3)
    out = masked_group_norm(padded, mask, 4, scale, bias)
    alone = masked_group_norm(x[1:, :6], jnp.ones((1, 6), bool), 4, scale, bias)
    np.testing.assert_allclose(out[1, :6], alone[0], atol=1e-4)


def _unet(channels=(8, 8, 8)):
    # Few distinct weight shapes: on CPU each new shape of an init op costs a compile.
    return UNet1D(8, 3, channels=channels, time_dim=8, num_blocks=1, num_mid_blocks=1, num_heads=2, ff_mult=2,
                  norm_groups=4, dropout=0.0, rngs=nnx.Rngs(0))


def test_unet_keeps_odd_lengths_and_ignores_padding():
    unet = _unet()
    assert unet.length_multiple == 4
    graphdef, params = nnx.split(unet, nnx.Param)
    # One jitted function (two input shapes) instead of eager op-by-op calls, for test speed.
    unet = jax.jit(lambda x, t, mask: nnx.merge(graphdef, params)(x, t, mask))
    lengths = jnp.array([13, 7])  # neither a multiple of 4
    x = jax.random.normal(jax.random.key(3), (2, 13, 8))
    t = jnp.array([0.3, 0.8])
    mask = jnp.arange(13)[None] < lengths[:, None]
    base = unet(x, t, mask)
    assert base.shape == (2, 13, 3)
    assert np.all(np.asarray(base)[~np.asarray(mask)] == 0)
    noisy = jnp.where(mask[..., None], x, jnp.nan)
    np.testing.assert_allclose(unet(noisy, t, mask)[mask], base[mask], atol=1e-4)
    # The short row alone, at a padded length of 7 -> 8 instead of 13 -> 16.
    alone = unet(x[1:, :7], t[1:], jnp.ones((1, 7), bool))
    np.testing.assert_allclose(alone[0], base[1, :7], atol=1e-4)
    # Valid frames interact (through convolutions, down/up sampling and attention), and t matters.
    changed = unet(x.at[0, 12].add(1.0), t, mask)
    assert np.abs(np.asarray(changed - base))[0, 0].max() > 1e-5
    assert not np.allclose(unet(x, t + 0.1, mask), base)


def test_unet_single_level_has_no_resampling():
    unet = _unet(channels=(8,))
    assert unet.length_multiple == 1
    out = unet(jnp.ones((1, 5, 8)), jnp.array([0.5]), jnp.ones((1, 5), bool))
    assert out.shape == (1, 5, 3) and np.all(np.isfinite(out))


def test_unet_rejects_bad_groups():
    with pytest.raises(ValueError, match="norm_groups"):
        UNet1D(6, 3, channels=(10,), norm_groups=4, rngs=nnx.Rngs(0))
