import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.nn import attention as attention_module
from jaxspeech.nn.attention import MaskSpec, attention, reference_attention, resolve_impl, rotary_embedding


@pytest.fixture(autouse=True)
def _full_float32_matmuls():
    """Exact float32 products on GPUs too (XLA's default there is TF32), so float64 comparisons hold."""
    with jax.default_matmul_precision("highest"):
        yield


def numpy_attention(q, k, v, allowed):
    """Direct per-head softmax(q k^T / sqrt(D)) v in float64; allowed: [B,Tq,Tk] bool.

    A row with no allowed key is all zeros (the library's convention)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    batch, q_len, heads, dim = q.shape
    group = heads // k.shape[2]
    out = np.zeros_like(q)
    for b in range(batch):
        for h in range(heads):
            kh, vh = k[b, :, h // group], v[b, :, h // group]
            for i in range(q_len):
                if not allowed[b, i].any():
                    continue
                s = kh @ q[b, i, h] / np.sqrt(dim)
                s = np.where(allowed[b, i], s, -np.inf)
                w = np.exp(s - s.max())
                out[b, i, h] = (w / w.sum()) @ vh
    return out


def _qkv(seed, batch=2, q_len=5, k_len=7, heads=4, kv_heads=2, dim=8):
    # numpy draws: eager jax.random ops would each need a compile, which dominates these tiny tests.
    rng = np.random.default_rng(seed)
    return tuple(
        jnp.asarray(rng.standard_normal(shape), jnp.float32)
        for shape in ((batch, q_len, heads, dim), (batch, k_len, kv_heads, dim), (batch, k_len, kv_heads, dim))
    )


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_matches_numpy_softmax_with_padding_and_gqa(kv_heads):
    q, k, v = _qkv(0, kv_heads=kv_heads)
    lengths = jnp.array([7, 4])
    mask = MaskSpec.from_lengths(lengths, 7)
    allowed = np.broadcast_to(np.asarray(mask.key_mask)[:, None, :], (2, 5, 7))
    got = attention(q, k, v, mask)
    np.testing.assert_allclose(got, numpy_attention(q, k, v, allowed), atol=1e-5)


def test_causal_mask_aligned_to_the_end_of_the_keys():
    q, k, v = _qkv(1, q_len=3, k_len=6)
    key_mask = jnp.array([[True] * 6, [True] * 5 + [False]])
    got = attention(q, k, v, MaskSpec(key_mask=key_mask, causal=True))
    causal = np.arange(6)[None, :] <= np.arange(3)[:, None] + 3
    allowed = causal[None] & np.asarray(key_mask)[:, None, :]
    np.testing.assert_allclose(got, numpy_attention(q, k, v, allowed), atol=1e-5)


def test_padded_keys_get_no_weight():
    q, k, v = _qkv(2)
    mask = MaskSpec.from_lengths(jnp.array([3, 5]), 7)
    base = attention(q, k, v, mask)
    # Arbitrary (even huge) values in padded keys/values must not change anything.
    pad = ~mask.key_mask[:, :, None, None]
    k2 = jnp.where(pad, 1e4, k)
    v2 = jnp.where(pad, -1e4, v)
    np.testing.assert_array_equal(attention(q, k2, v2, mask), base)


def test_fully_masked_rows_are_zero_with_finite_gradients_and_jit_works():
    q, k, v = _qkv(3)
    mask = MaskSpec(key_mask=jnp.array([[False] * 7, [True] * 3 + [False] * 4]))
    out = jax.jit(attention)(q, k, v, mask)
    np.testing.assert_array_equal(out[0], 0)
    assert np.all(np.isfinite(out))
    grads = jax.grad(lambda q, k, v: jnp.sum(attention(q, k, v, mask) ** 2), argnums=(0, 1, 2))(q, k, v)
    assert all(np.all(np.isfinite(g)) for g in grads)
    np.testing.assert_array_equal(grads[0][0], 0)


def _numpy_allowed(batch, q_len, k_len, *, key_lengths=None, causal=False, segments=None, span=None, spans=None):
    """Dense mask built element by element from the definitions (independent of MaskSpec code).
    span: (start [B], end [B]), one dual span per row; spans: per row a list of (start, end)."""
    if span is not None:
        spans = [[(span[0][b], span[1][b])] for b in range(batch)]
    allowed = np.ones((batch, q_len, k_len), bool)
    for b in range(batch):
        for i in range(q_len):
            p = i + k_len - q_len
            for j in range(k_len):
                ok = key_lengths is None or j < key_lengths[b]
                if causal:
                    in_span = spans is not None and any(s <= p < e and s <= j < e for s, e in spans[b])
                    ok &= j <= p or in_span
                if segments is not None:
                    ok &= segments[0][b][i] == segments[1][b][j]
                allowed[b, i, j] = ok
    return allowed


def test_segment_ids_match_numpy():
    q, k, v = _qkv(8, q_len=6, k_len=6)
    q_ids = np.array([[0, 0, 1, 1, 1, 2], [0, 0, 0, 0, 5, 5]])
    kv_ids = np.array([[0, 0, 1, 1, 1, 2], [0, 0, 0, 0, 1, 1]])  # row 1: queries 4, 5 see nothing
    got = attention(q, k, v, MaskSpec(q_segment_ids=jnp.array(q_ids), kv_segment_ids=jnp.array(kv_ids)))
    allowed = _numpy_allowed(2, 6, 6, segments=(q_ids, kv_ids))
    np.testing.assert_allclose(got, numpy_attention(q, k, v, allowed), atol=1e-5)


def test_univoice_dual_mask_matches_numpy():
    """Causal everywhere plus a bidirectional block over the speech span, with key padding."""
    q, k, v = _qkv(9, q_len=8, k_len=8)
    start, end, lengths = np.array([2, 0]), np.array([6, 8]), np.array([8, 7])
    mask = MaskSpec(key_mask=jnp.asarray(np.arange(8)[None, :] < lengths[:, None]), causal=True,
                    span_start=jnp.array(start), span_end=jnp.array(end))
    allowed = _numpy_allowed(2, 8, 8, key_lengths=lengths, causal=True, span=(start, end))
    assert allowed[0, 2, 5] and not allowed[0, 1, 2] and not allowed[0, 6, 7]  # span, text, after span
    np.testing.assert_allclose(attention(q, k, v, mask), numpy_attention(q, k, v, allowed), atol=1e-5)


def test_packed_dual_mask_with_span_ids_matches_numpy():
    """Packed rows: several utterances per row (segment ids), each TTS utterance with its own
    bidirectional span given as span ids (-1 outside), an ASR utterance with none, key padding."""
    q, k, v = _qkv(11, q_len=12, k_len=12)
    segments = np.array([[0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]])
    spans = [[(2, 5), (8, 12)], [(1, 4), (9, 11)]]  # row 1's second utterance (4..7) is ASR
    span_ids = np.full((2, 12), -1)
    for b, row in enumerate(spans):
        for n, (start, end) in enumerate(row):
            span_ids[b, start:end] = n
    lengths = np.array([12, 11])
    mask = MaskSpec(key_mask=jnp.asarray(np.arange(12)[None, :] < lengths[:, None]), causal=True,
                    q_segment_ids=jnp.asarray(segments), kv_segment_ids=jnp.asarray(segments),
                    q_span_ids=jnp.asarray(span_ids), kv_span_ids=jnp.asarray(span_ids))
    allowed = _numpy_allowed(2, 12, 12, key_lengths=lengths, causal=True, segments=(segments, segments), spans=spans)
    assert allowed[0, 8, 11] and allowed[0, 2, 4] and not allowed[0, 8, 4] and not allowed[1, 5, 6]
    np.testing.assert_allclose(attention(q, k, v, mask), numpy_attention(q, k, v, allowed), atol=1e-5)


def test_pallas_kernel_in_interpret_mode_matches_reference():
    q, k, v = _qkv(10, q_len=20, k_len=20)
    mask = MaskSpec(causal=True, span_start=jnp.array([4, 0]), span_end=jnp.array([12, 20]),
                    key_mask=jnp.asarray(np.arange(20)[None, :] < np.array([[20], [13]])))
    run = jax.jit(lambda q, k, v: attention(q, k, v, mask, impl="pallas", interpret=True),
                  compiler_options={"xla_backend_optimization_level": 0})
    np.testing.assert_allclose(run(q, k, v), reference_attention(q, k, v, mask), atol=2e-5)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN and the compiled Pallas kernel need a CUDA GPU")
@pytest.mark.parametrize("impl", ["cudnn", "pallas", "auto"])
@pytest.mark.parametrize("masking", ["causal", "lengths"])
def test_gpu_implementations_match_the_reference_in_bfloat16(impl, masking):
    """Output and gradients within 2x the XLA reference's own bf16 error, both measured against a
    float32 reference on the same bf16-rounded inputs (T = 200: no block size divides it)."""
    q, k, v = (x.astype(jnp.bfloat16) for x in _qkv(11, q_len=200, k_len=200, dim=64))
    cotangent = jnp.asarray(np.random.default_rng(12).standard_normal(q.shape), jnp.bfloat16)
    mask = MaskSpec(causal=True) if masking == "causal" else MaskSpec.from_lengths(jnp.array([200, 77]), 200)

    def out_and_grads(attend, *args):
        out, pull = jax.vjp(attend, *args)
        return (out, *pull(cotangent.astype(out.dtype)))

    got = jax.jit(functools.partial(out_and_grads, lambda *a: attention(*a, mask, impl=impl)))(q, k, v)
    xla = out_and_grads(lambda *a: reference_attention(*a, mask), q, k, v)
    truth = out_and_grads(lambda *a: reference_attention(*a, mask), *(x.astype(jnp.float32) for x in (q, k, v)))
    for name, g, x, t in zip(("out", "dq", "dk", "dv"), got, xla, truth):
        assert g.dtype == jnp.bfloat16, name
        error = float(jnp.abs(g.astype(jnp.float32) - t).max())
        assert error <= 2 * float(jnp.abs(x.astype(jnp.float32) - t).max()) + 1e-3, (name, error)


@pytest.mark.parametrize("masking", ["none", "padding", "causal_span", "segments"])
def test_blocked_attention_matches_numpy_and_the_reference_gradients(masking, monkeypatch):
    """impl="chunked" in pieces of 4 query rows (2 heads per key/value head x 4 x 10 keys), which
    do not divide Tq: the padded tail rows are dropped."""
    monkeypatch.setattr(attention_module, "BLOCK_LOGITS", 2 * 4 * 10)
    q, k, v = _qkv(13, q_len=10, k_len=10)
    lengths, start, end = np.array([10, 6]), np.array([3, 0]), np.array([7, 5])
    q_ids = np.array([[0] * 5 + [1] * 5, [0] * 3 + [2] * 7])  # row 1: queries 3.. see no key
    kv_ids = np.array([[0] * 5 + [1] * 5, [0] * 10])
    mask, allowed = {
        "none": (None, _numpy_allowed(2, 10, 10)),
        "padding": (MaskSpec.from_lengths(jnp.asarray(lengths), 10), _numpy_allowed(2, 10, 10, key_lengths=lengths)),
        "causal_span": (MaskSpec(key_mask=jnp.asarray(np.arange(10)[None] < lengths[:, None]), causal=True,
                                 span_start=jnp.asarray(start), span_end=jnp.asarray(end)),
                        _numpy_allowed(2, 10, 10, key_lengths=lengths, causal=True, span=(start, end))),
        "segments": (MaskSpec(q_segment_ids=jnp.asarray(q_ids), kv_segment_ids=jnp.asarray(kv_ids)),
                     _numpy_allowed(2, 10, 10, segments=(q_ids, kv_ids))),
    }[masking]
    chunked = functools.partial(attention, mask=mask, impl="chunked")
    np.testing.assert_allclose(chunked(q, k, v), numpy_attention(q, k, v, allowed), atol=1e-5)
    cotangent = jnp.asarray(np.random.default_rng(1).standard_normal(q.shape), jnp.float32)
    grads = [jax.vjp(f, q, k, v)[1](cotangent)
             for f in (chunked, functools.partial(reference_attention, mask=mask))]
    for got, want in zip(*grads):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_auto_dispatch_picks_by_platform_mask_and_dtype(monkeypatch):
    q, k, v = (x.astype(jnp.bfloat16) for x in _qkv(11, q_len=7, k_len=7))
    causal, lengths = MaskSpec(causal=True), MaskSpec.from_lengths(jnp.array([7, 3]), 7)
    segments = MaskSpec(q_segment_ids=jnp.zeros((2, 7), int), kv_segment_ids=jnp.zeros((2, 7), int))
    scattered = MaskSpec(key_mask=jnp.ones((2, 7), bool))
    if jax.default_backend() == "cpu":
        assert resolve_impl("auto", q, k, v, causal) == ("xla", None)
        long_q = jnp.zeros((1, attention_module.CHUNKED_FROM, 4, 8))
        assert resolve_impl("auto", long_q, k, v, None) == ("chunked", None)
        assert resolve_impl("auto", long_q[:, 1:], k, v, None) == ("xla", None)
        with pytest.raises(ValueError, match="impl='cudnn' cannot run this call: cuDNN attention needs a CUDA GPU"):
            attention(q, k, v, causal, impl="cudnn")
        with pytest.raises(ValueError, match="impl='pallas' cannot run this call: .*use interpret=True"):
            attention(q, k, v, causal, impl="pallas")
    long_q = jnp.zeros((1, attention_module.CHUNKED_FROM, 4, 8))
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")  # the blocks are sized for CPU caches
    assert resolve_impl("auto", long_q, k, v, None) == ("xla", None)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert resolve_impl("auto", q, k, v, causal) == ("cudnn", None)
    assert resolve_impl("auto", q, k, v, lengths) == ("cudnn", None)
    assert resolve_impl("auto", q, k, v, scattered) == ("pallas", None)  # a key_mask not known to be a prefix
    assert resolve_impl("auto", q, k, v, segments) == ("pallas", None)
    assert resolve_impl("auto", q[:, :3], k, v, causal) == ("pallas", None)  # cuDNN aligns causal differently
    assert resolve_impl("auto", *(x.astype(jnp.float32) for x in (q, k, v)), causal) == ("pallas", None)
    impl, reason = resolve_impl("auto", *(x.astype(jnp.float16) for x in (q, k, v)), segments)
    assert impl == "xla" and "float32 or bfloat16" in reason and "segment ids" in reason
    with pytest.raises(ValueError, match="impl='cudnn' cannot run this call: .*segment ids"):
        resolve_impl("cudnn", q, k, v, segments)
    with pytest.raises(ValueError, match="interpret=True .* needs impl='pallas'"):
        resolve_impl("auto", q, k, v, causal, interpret=True)


def test_auto_fallback_warns_once_and_uses_the_reference(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    attention_module._warn_fallback_once.cache_clear()
    q, k, v = (x.astype(jnp.float16) for x in _qkv(12))
    mask = MaskSpec(q_segment_ids=jnp.zeros((2, 5), int), kv_segment_ids=jnp.zeros((2, 7), int))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = attention(q, k, v, mask)
        attention(q, k, v, mask)
    assert len(caught) == 1 and "falls back to the XLA reference" in str(caught[0].message)
    np.testing.assert_array_equal(first, reference_attention(q, k, v, mask))


def test_bf16_inputs_keep_dtype_and_accuracy():
    q, k, v = _qkv(4)
    got = reference_attention(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16))
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(got.astype(np.float32), attention(q, k, v), atol=5e-2)


def test_bad_inputs_raise_clear_errors():
    q, k, v = _qkv(5, heads=3, kv_heads=2)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        attention(q, k, v)
    q, k, v = _qkv(5)
    with pytest.raises(ValueError, match="unknown attention impl"):
        attention(q, k, v, impl="magic")
    with pytest.raises(ValueError, match="key_mask must be"):
        attention(q, k, v, MaskSpec(key_mask=jnp.ones((2, 5), bool)))
    with pytest.raises(ValueError, match="both q_segment_ids and kv_segment_ids"):
        attention(q, k, v, MaskSpec(q_segment_ids=jnp.zeros((2, 5), int)))
    with pytest.raises(ValueError, match="span_start must be"):
        attention(q, k, v, MaskSpec(causal=True, span_start=jnp.zeros((3,), int), span_end=jnp.zeros((2,), int)))
    with pytest.raises(ValueError, match="set causal=True"):
        attention(q, k, v, MaskSpec(span_start=jnp.zeros((2,), int), span_end=jnp.zeros((2,), int)))
    q_ids, kv_ids = jnp.zeros((2, 5), int), jnp.zeros((2, 7), int)
    with pytest.raises(ValueError, match="q_span_ids must be"):
        attention(q, k, v, MaskSpec(causal=True, q_span_ids=kv_ids, kv_span_ids=kv_ids))
    with pytest.raises(ValueError, match="both q_span_ids and kv_span_ids"):
        attention(q, k, v, MaskSpec(causal=True, q_span_ids=q_ids))
    with pytest.raises(ValueError, match="not both"):
        attention(q, k, v, MaskSpec(causal=True, q_span_ids=q_ids, kv_span_ids=kv_ids, span_start=jnp.zeros((2,), int),
                                    span_end=jnp.zeros((2,), int)))


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
