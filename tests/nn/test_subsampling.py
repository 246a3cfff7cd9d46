import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxspeech.nn.subsampling import ConvSubsampling, subsampled_length


def test_subsampled_length_matches_conv_arithmetic_and_layer_shapes():
    layer = ConvSubsampling(12, 16, channels=4, rngs=nnx.Rngs(0))
    for frames in (2, 3, 6, 7, 30):
        y, mask = layer(jnp.ones((1, frames, 12)), jnp.ones((1, frames), bool))
        assert y.shape == (1, subsampled_length(frames), 16)
        assert int(mask.sum()) == y.shape[1]
    for frames in range(3, 100):
        assert subsampled_length(frames) == ((frames - 1) // 2 - 1) // 2
    assert subsampled_length(0) == subsampled_length(2) == 0
    np.testing.assert_array_equal(subsampled_length(jnp.array([0, 7, 8, 100])), [0, 1, 1, 24])


def test_valid_outputs_ignore_padding_and_depend_on_their_receptive_field_only():
    layer = ConvSubsampling(10, 8, channels=3, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (2, 40, 10))
    mask = jnp.arange(40)[None, :] < jnp.array([[40], [23]])
    y, out_mask = layer(x, mask)
    np.testing.assert_array_equal(out_mask.sum(1), [subsampled_length(40), subsampled_length(23)])
    # Different padding content and a shorter padded length: same valid outputs, zero padding.
    noisy = jnp.where(mask[..., None], x, 1e3)
    y2, _ = layer(noisy, mask)
    np.testing.assert_allclose(y2, y, atol=1e-5)
    y3, m3 = layer(x[1:, :23], mask[1:, :23])
    np.testing.assert_allclose(y3[0], y[1, : y3.shape[1]], atol=1e-5)
    assert np.all(np.asarray(y)[1, ~np.asarray(out_mask)[1]] == 0)
    # Output frame t depends on input frames 4t..4t+6 only.
    grad = jax.grad(lambda inp: layer(inp, jnp.ones((1, 40), bool))[0][0, 3].sum())(x[:1])
    touched = np.nonzero(np.abs(np.asarray(grad[0])).sum(-1))[0]
    assert touched.min() == 12 and touched.max() == 18


def test_rejects_wrong_feature_count_and_tiny_n_mels():
    layer = ConvSubsampling(10, 8, channels=3, rngs=nnx.Rngs(1))
    with pytest.raises(ValueError, match="feature bins"):
        layer(jnp.ones((1, 20, 9)), jnp.ones((1, 20), bool))
    with pytest.raises(ValueError, match="too small"):
        ConvSubsampling(6, 8, channels=3, rngs=nnx.Rngs(1))
