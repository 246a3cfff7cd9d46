import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxspeech.nn.conformer import ConformerBlock, ConformerEncoder
from jaxspeech.nn.depthwise_conv import depthwise_conv1d


def _encoder(dropout=0.0):
    return ConformerEncoder(16, 2, 2, ff_mult=2, conv_kernel=5, dropout=dropout, rngs=nnx.Rngs(0))


def test_encoder_is_padding_invariant():
    encoder = _encoder()
    lengths = jnp.array([11, 6])
    x = jax.random.normal(jax.random.key(0), (2, 11, 16))
    mask = jnp.arange(11)[None, :] < lengths[:, None]
    base = encoder(x, mask)
    # Other padding content.
    noisy = jnp.where(mask[..., None], x, 50.0 * jax.random.normal(jax.random.key(1), x.shape))
    np.testing.assert_allclose(encoder(noisy, mask)[1, :6], base[1, :6], atol=1e-5)
    # Longer padded length.
    longer = jnp.pad(x, ((0, 0), (0, 9), (0, 0)), constant_values=3.0)
    longer_mask = jnp.arange(20)[None, :] < lengths[:, None]
    out_long = encoder(longer, longer_mask)
    np.testing.assert_allclose(out_long[:, :11][mask], base[mask], atol=1e-5)
    # No padding at all for the short utterance.
    alone = encoder(x[1:, :6], jnp.ones((1, 6), bool))
    np.testing.assert_allclose(alone[0], base[1, :6], atol=1e-5)
    assert np.all(np.asarray(out_long)[~np.asarray(longer_mask)] == 0)


def test_valid_frames_interact_through_attention_and_convolution():
    # The invariance above must not come from frames ignoring each other.
    encoder = _encoder()
    x = jax.random.normal(jax.random.key(2), (1, 9, 16))
    mask = jnp.ones((1, 9), bool)
    changed = x.at[0, 8].add(jax.random.normal(jax.random.key(4), (16,)))  # not a constant: LayerNorm removes that
    diff = np.abs(np.asarray(encoder(changed, mask) - encoder(x, mask)))[0, 0]
    assert diff.max() > 1e-4


def test_dropout_uses_the_explicit_rng_only():
    block = ConformerBlock(16, 2, ff_mult=2, conv_kernel=5, dropout=0.3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(3), (2, 7, 16))
    mask = jnp.ones((2, 7), bool)
    deterministic = block(x, mask)
    np.testing.assert_array_equal(block(x, mask), deterministic)
    a = block(x, mask, rngs=nnx.Rngs(dropout=jax.random.key(5)))
    b = block(x, mask, rngs=nnx.Rngs(dropout=jax.random.key(5)))
    c = block(x, mask, rngs=nnx.Rngs(dropout=jax.random.key(6)))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, deterministic) and not np.allclose(a, c)
    # The module holds parameters only, so the pure split is exhaustive.
    graphdef, params = nnx.split(block, nnx.Param)
    np.testing.assert_array_equal(nnx.merge(graphdef, params)(x, mask), deterministic)


def test_block_rejects_bad_configuration():
    with pytest.raises(ValueError, match="divisible"):
        ConformerBlock(15, 2, ff_mult=2, conv_kernel=5, dropout=0.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="even"):
        ConformerBlock(12, 4, ff_mult=2, conv_kernel=5, dropout=0.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="odd"):
        ConformerBlock(16, 2, ff_mult=2, conv_kernel=4, dropout=0.0, rngs=nnx.Rngs(0))


def test_depthwise_conv1d_matches_grouped_convolution():
    x = jax.random.normal(jax.random.key(0), (3, 11, 6))
    kernel = jax.random.normal(jax.random.key(1), (5, 6))
    grouped = jax.lax.conv_general_dilated(
        x, kernel[:, None, :], (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=6
    )
    np.testing.assert_allclose(depthwise_conv1d(x, kernel), grouped, atol=1e-5)
