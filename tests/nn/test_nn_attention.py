import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.nn.attention import MaskSpec, attention, reference_attention, rotary_embedding


def numpy_attention(q, k, v, allowed):
    """Direct per-head softmax(q k^T / sqrt(D)) v in float64; allowed: [B,Tq,Tk] bool."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    batch, q_len, heads, dim = q.shape
    group = heads // k.shape[2]
    out = np.zeros_like(q)
    for b in range(batch):
        for h in range(heads):
            kh, vh = k[b, :, h // group], v[b, :, h // group]
            for i in range(q_len):
                s = kh @ q[b, i, h] / np.sqrt(dim)
                s = np.where(allowed[b, i], s, -np.inf)
                w = np.exp(s - s.max())
                out[b, i, h] = (w / w.sum()) @ vh
    return out


def _qkv(key, batch=2, q_len=5, k_len=7, heads=4, kv_heads=2, dim=8):
    kq, kk, kv = jax.random.split(key, 3)
    return (
        jax.random.normal(kq, (batch, q_len, heads, dim)),
        jax.random.normal(kk, (batch, k_len, kv_heads, dim)),
        jax.random.normal(kv, (batch, k_len, kv_heads, dim)),
    )


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_matches_numpy_softmax_with_padding_and_gqa(kv_heads):
    q, k, v = _qkv(jax.random.key(0), kv_heads=kv_heads)
    lengths = jnp.array([7, 4])
    mask = MaskSpec.from_lengths(lengths, 7)
    allowed = np.broadcast_to(np.asarray(mask.key_mask)[:, None, :], (2, 5, 7))
    got = attention(q, k, v, mask)
    np.testing.assert_allclose(got, numpy_attention(q, k, v, allowed), atol=1e-5)


def test_causal_mask_aligned_to_the_end_of_the_keys():
    q, k, v = _qkv(jax.random.key(1), q_len=3, k_len=6)
    key_mask = jnp.array([[True] * 6, [True] * 5 + [False]])
    got = attention(q, k, v, MaskSpec(key_mask=key_mask, causal=True))
    causal = np.arange(6)[None, :] <= np.arange(3)[:, None] + 3
    allowed = causal[None] & np.asarray(key_mask)[:, None, :]
    np.testing.assert_allclose(got, numpy_attention(q, k, v, allowed), atol=1e-5)


def test_padded_keys_get_no_weight():
    q, k, v = _qkv(jax.random.key(2))
    mask = MaskSpec.from_lengths(jnp.array([3, 5]), 7)
    base = attention(q, k, v, mask)
    # Arbitrary (even huge) values in padded keys/values must not change anything.
    pad = ~mask.key_mask[:, :, None, None]
    k2 = jnp.where(pad, 1e4, k)
    v2 = jnp.where(pad, -1e4, v)
    np.testing.assert_array_equal(attention(q, k2, v2, mask), base)


def test_fully_masked_row_is_finite_and_jit_works():
    q, k, v = _qkv(jax.random.key(3))
    mask = MaskSpec(key_mask=jnp.zeros((2, 7), bool))
    out = jax.jit(attention)(q, k, v, mask)
    assert np.all(np.isfinite(out))


def test_bf16_inputs_keep_dtype_and_accuracy():
    q, k, v = _qkv(jax.random.key(4))
    got = reference_attention(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16))
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(got.astype(np.float32), attention(q, k, v), atol=5e-2)


def test_bad_inputs_raise_clear_errors():
    q, k, v = _qkv(jax.random.key(5), heads=3, kv_heads=2)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        attention(q, k, v)
    q, k, v = _qkv(jax.random.key(5))
    with pytest.raises(ValueError, match="unknown attention impl"):
        attention(q, k, v, impl="magic")
    with pytest.raises(ValueError, match="key_mask must be"):
        attention(q, k, v, MaskSpec(key_mask=jnp.ones((2, 5), bool)))


def test_rotary_dot_products_depend_only_on_position_difference():
    kq, kk = jax.random.split(jax.random.key(6))
    q = jax.random.normal(kq, (1, 1, 1, 16))
    k = jax.random.normal(kk, (1, 1, 1, 16))

    def score(m, n):
        qm = rotary_embedding(q, jnp.array([m]))
        kn = rotary_embedding(k, jnp.array([n]))
        return float(jnp.sum(qm * kn))

    np.testing.assert_allclose(score(3, 1), score(10, 8), rtol=1e-5)
    np.testing.assert_allclose(score(0, 5), score(7, 12), rtol=1e-5)
    assert abs(score(3, 1) - score(3, 2)) > 1e-3
    # Position 0 is the identity and the rotation preserves norms.
    np.testing.assert_allclose(rotary_embedding(q, jnp.array([0])), q, atol=1e-7)
    np.testing.assert_allclose(jnp.linalg.norm(rotary_embedding(q, jnp.array([9]))), jnp.linalg.norm(q), rtol=1e-6)


def test_rotary_matches_explicit_pairwise_rotation():
    x = jax.random.normal(jax.random.key(7), (2, 3, 2, 6))
    pos = np.array([0, 4, 9])
    got = np.asarray(rotary_embedding(x, jnp.asarray(pos)))
    xn = np.asarray(x, np.float64)
    for i in range(3):
        theta = pos * 10000.0 ** (-i / 3)
        a, b = xn[..., i], xn[..., i + 3]
        c, s = np.cos(theta)[None, :, None], np.sin(theta)[None, :, None]
        np.testing.assert_allclose(got[..., i], a * c - b * s, atol=1e-5)
        np.testing.assert_allclose(got[..., i + 3], a * s + b * c, atol=1e-5)
