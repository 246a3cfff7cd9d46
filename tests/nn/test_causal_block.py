"""The causal block with a KV cache: cached decoding equals one causal pass; GQA is MHA with shared heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxspeech.nn.attention import MaskSpec
from jaxspeech.nn.causal_block import CausalBlock, init_cache

B, T, D, H = 2, 9, 16, 4


def _block(num_kv_heads=2, seed=0, **kwargs):
    return CausalBlock(D, H, ff_dim=24, num_kv_heads=num_kv_heads, rngs=nnx.Rngs(params=seed), **kwargs)


def _x(seed=1):
    return jax.random.normal(jax.random.key(seed), (B, T, D))


@pytest.mark.parametrize("kind", [dict(), dict(norm="layer", mlp="gelu", rope=False, bias=True)])
def test_prefill_then_token_by_token_equals_one_causal_pass(kind):
    block, x = _block(**kind), _x()
    full, no_cache = block(x)
    assert no_cache is None
    step = jax.jit(lambda x, cache: block(x, cache=cache))
    cache = init_cache(B, 16, 2, D // H)
    prefix, cache = step(x[:, :4], cache)  # a prompt of 4 tokens, then one token at a time
    pieces = [prefix]
    for t in range(4, T):
        out, cache = step(x[:, t:t + 1], cache)
        pieces.append(out)
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full, atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(cache.length, [T, T])
    assert np.all(np.asarray(cache.k[:, T:]) == 0)  # nothing written past the tokens


def test_outputs_never_read_later_tokens():
    block, x = _block(), _x()
    changed = x.at[:, 6:].set(7.0)
    np.testing.assert_allclose(block(changed)[0][:, :6], block(x)[0][:, :6], atol=1e-6)
    assert np.abs(np.asarray(block(changed)[0][:, 6:] - block(x)[0][:, 6:])).max() > 1e-3


def test_grouped_query_attention_is_multi_head_attention_with_shared_key_value_heads():
    gqa = _block(num_kv_heads=2)
    mha = _block(num_kv_heads=H, seed=3)
    state = nnx.state(gqa, nnx.Param)
    full = nnx.state(mha, nnx.Param)
    group, head_dim = H // 2, D // H
    for name in ("key", "value"):  # kv head g serves query heads g*group .. (g+1)*group - 1
        kernel = state[name]["kernel"][...].reshape(D, 2, head_dim)
        full[name]["kernel"] = nnx.Param(jnp.repeat(kernel, group, axis=1).reshape(D, D))
    for name in ("attn_norm", "query", "out", "mlp_norm", "up", "gate", "down"):
        full[name] = state[name]
    nnx.update(mha, full)
    np.testing.assert_allclose(mha(_x())[0], gqa(_x())[0], atol=1e-5)


def test_key_padding_and_bad_arguments():
    block, x = _block(), _x()
    key_mask = jnp.arange(T)[None] < jnp.array([[T], [5]])
    padded = block(x, mask=MaskSpec(key_mask=key_mask, causal=True))[0]
    np.testing.assert_allclose(padded[1, :5], block(x[1:, :5])[0][0], atol=1e-5)  # padding is never read
    with pytest.raises(ValueError, match="num_kv_heads"):
        CausalBlock(D, H, ff_dim=8, num_kv_heads=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="norm must be one of"):
        CausalBlock(D, H, ff_dim=8, norm="batch", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="pass neither"):
        block(x, cache=init_cache(B, 16, 2, D // H), mask=MaskSpec(key_mask=key_mask, causal=True))
    with pytest.raises(ValueError, match="causal MaskSpec"):
        block(x, mask=MaskSpec(key_mask=key_mask))
