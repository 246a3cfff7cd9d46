import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxspeech.nn.attention import MaskSpec, reference_attention, rotary_embedding
from jaxspeech.nn.dit import DiT, DiTBlock


def test_adaln_zero_block_is_identity_at_init_and_dit_outputs_zero():
    block = DiTBlock(16, 2, ff_mult=2, dropout=0.0, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 7, 16))
    c = jax.random.normal(jax.random.key(1), (2, 16))
    mask = jnp.arange(7)[None] < jnp.array([[7], [4]])
    np.testing.assert_array_equal(block(x, c, mask), x)
    dit = DiT(5, 3, 4, d_model=16, num_layers=2, num_heads=2, ff_mult=2, dropout=0.0, rngs=nnx.Rngs(1))
    out = dit(jax.random.normal(jax.random.key(2), (2, 7, 5)), jnp.array([0.2, 0.7]), jnp.ones((2, 4)), mask)
    np.testing.assert_array_equal(out, jnp.zeros((2, 7, 3)))


def _randomise(module, key):
    graphdef, params = nnx.split(module, nnx.Param)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    leaves = [0.3 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves)]
    return nnx.merge(graphdef, jax.tree.unflatten(tree, leaves))


def _ln(x):
    return (x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True) + 1e-6)


def test_block_matches_adaln_formula():
    block = _randomise(DiTBlock(16, 2, ff_mult=2, dropout=0.0, rngs=nnx.Rngs(0)), jax.random.key(3))
    x = jax.random.normal(jax.random.key(4), (2, 6, 16))
    c = jax.random.normal(jax.random.key(5), (2, 16))
    mask = jnp.arange(6)[None] < jnp.array([[6], [3]])
    mod = jax.nn.silu(c) @ block.modulation.kernel[...] + block.modulation.bias[...]
    sa, ca, ga, sf, cf, gf = (m[:, None, :] for m in jnp.split(mod, 6, axis=-1))
    attn, ffn = block.attn, block.ffn

    def heads(layer, h):
        return (h @ layer.kernel[...] + layer.bias[...]).reshape(2, 6, 2, 8)

    h = _ln(x) * (1 + ca) + sa
    pos = jnp.arange(6)
    y = reference_attention(rotary_embedding(heads(attn.query, h), pos), rotary_embedding(heads(attn.key, h), pos),
                            heads(attn.value, h), MaskSpec(key_mask=mask)).reshape(2, 6, 16)
    x1 = x + ga * (y @ attn.out.kernel[...] + attn.out.bias[...])
    h = _ln(x1) * (1 + cf) + sf
    u = jax.nn.silu(h @ ffn.up.kernel[...] + ffn.up.bias[...])
    expected = x1 + gf * (u @ ffn.down.kernel[...] + ffn.down.bias[...])
    np.testing.assert_allclose(block(x, c, mask), expected, atol=1e-4)


def test_dit_keeps_odd_lengths_and_ignores_padding():
    dit = _randomise(DiT(5, 3, 4, d_model=16, num_layers=2, num_heads=2, ff_mult=2, dropout=0.0, rngs=nnx.Rngs(1)),
                     jax.random.key(6))
    x = jax.random.normal(jax.random.key(7), (2, 11, 5))
    t, cond = jnp.array([0.1, 0.6]), jax.random.normal(jax.random.key(8), (2, 4))
    mask = jnp.arange(11)[None] < jnp.array([[11], [5]])
    base = dit(x, t, cond, mask)
    assert base.shape == (2, 11, 3) and np.all(np.asarray(base)[~np.asarray(mask)] == 0)
    np.testing.assert_allclose(dit(jnp.where(mask[..., None], x, jnp.nan), t, cond, mask)[mask], base[mask], atol=1e-4)
    np.testing.assert_allclose(dit(x[1:, :5], t[1:], cond[1:], jnp.ones((1, 5), bool))[0], base[1, :5], atol=1e-4)
    # The condition and the time both steer the output.
    assert not np.allclose(dit(x, t, cond + 1.0, mask), base)
    assert not np.allclose(dit(x, t + 0.2, cond, mask), base)
