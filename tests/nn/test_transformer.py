import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxspeech.nn.transformer import Transformer, TransformerBlock


def _layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def _linear(layer, x):
    return x @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)


def _rope(x):
    """RoPE as complex rotation of channel pairs (i, i + D/2) by position * 10000^(-2i/D). x: [T,H,D]."""
    half = x.shape[-1] // 2
    angle = np.arange(x.shape[0])[:, None, None] * 10000.0 ** (-np.arange(half) / half)
    z = (x[..., :half] + 1j * x[..., half:]) * np.exp(1j * angle)
    return np.concatenate([z.real, z.imag], axis=-1)


def numpy_block(block, x, mask, heads):
    """TransformerBlock for one utterance x [T,D] with key mask [T], in float64 numpy."""
    attn, ffn = block.attn, block.ffn
    h = _layer_norm(x, np.asarray(attn.norm.scale[...]), np.asarray(attn.norm.bias[...]))
    t, d = x.shape
    q, k, v = (_linear(layer, h).reshape(t, heads, d // heads) for layer in (attn.query, attn.key, attn.value))
    q, k = _rope(q), _rope(k)
    logits = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d // heads)
    logits = np.where(mask[None, None, :], logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    y = np.einsum("hqk,khd->qhd", weights, v).reshape(t, d)
    x = x + _linear(attn.out, y)
    h = _layer_norm(x, np.asarray(ffn.norm.scale[...]), np.asarray(ffn.norm.bias[...]))
    u = _linear(ffn.up, h)
    return x + _linear(ffn.down, u / (1 + np.exp(-u)))


def test_block_matches_numpy_pre_ln_rope_transformer():
    block = TransformerBlock(16, 2, ff_mult=2, dropout=0.0, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (1, 9, 16))
    mask = jnp.arange(9)[None] < 7
    out = block(x, mask)
    expected = numpy_block(block, np.asarray(x[0], np.float64), np.asarray(mask[0]), 2)
    np.testing.assert_allclose(out[0, :7], expected[:7], atol=1e-4)


def test_stack_is_padding_invariant_and_zero_on_padding():
    stack = Transformer(16, 2, 2, ff_mult=2, dropout=0.0, rngs=nnx.Rngs(1))
    lengths = jnp.array([11, 6])
    x = jax.random.normal(jax.random.key(1), (2, 11, 16))
    mask = jnp.arange(11)[None] < lengths[:, None]
    base = stack(x, mask)
    noisy = jnp.where(mask[..., None], x, jnp.nan)
    np.testing.assert_allclose(stack(noisy, mask)[mask], base[mask], atol=1e-5)
    alone = stack(x[1:, :6], jnp.ones((1, 6), bool))
    np.testing.assert_allclose(alone[0], base[1, :6], atol=1e-5)
    assert np.all(np.asarray(base)[~np.asarray(mask)] == 0)
    # Valid frames do interact (the invariance is not from ignoring each other).
    changed = stack(x.at[0, 10].add(1.0 + jnp.arange(16.0)), mask)
    assert np.abs(np.asarray(changed - base))[0, 0].max() > 1e-4


def test_dropout_comes_from_explicit_rngs_and_split_is_params_only():
    stack = Transformer(16, 1, 2, ff_mult=2, dropout=0.3, rngs=nnx.Rngs(2))
    x = jax.random.normal(jax.random.key(2), (2, 5, 16))
    mask = jnp.ones((2, 5), bool)
    deterministic = stack(x, mask)
    a = stack(x, mask, rngs=nnx.Rngs(dropout=jax.random.key(3)))
    np.testing.assert_array_equal(a, stack(x, mask, rngs=nnx.Rngs(dropout=jax.random.key(3))))
    assert not np.allclose(a, deterministic)
    graphdef, params = nnx.split(stack, nnx.Param)
    np.testing.assert_array_equal(nnx.merge(graphdef, params)(x, mask), deterministic)


def test_rejects_bad_configuration():
    with pytest.raises(ValueError, match="num_layers"):
        Transformer(16, 0, 2, ff_mult=2, dropout=0.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="divisible"):
        TransformerBlock(16, 3, ff_mult=2, dropout=0.0, rngs=nnx.Rngs(0))
