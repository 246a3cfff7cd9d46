"""Pallas flash attention against the plain-JAX reference, for every mask kind: compiled on a GPU,
in the Pallas interpreter elsewhere.

Shapes are tiny and deliberately awkward: T = 40 with 16-row blocks (padding inside the kernel),
grouped-query heads (4 query heads on 2 key/value heads), head dim 16.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.kernels.attention_mask import MaskSpec, block_visibility, dense_mask
from jaxspeech.kernels.flash_attention import BlockSizes, flash_attention, reference

BLOCKS = BlockSizes(16, 16, 16, 16)
BATCH, LENGTH, HEADS, KV_HEADS, DIM = 2, 40, 4, 2, 16
INTERPRET = jax.default_backend() != "gpu"
# Interpret-mode kernels are large XLA programs; optimisation level 0 halves their compile time.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
# float32 tolerance: exact float32 in the interpreter; on GPUs both the kernel's and XLA's float32
# dots use TF32 tensor cores by default (10-bit mantissa, about 5e-4 relative per product).
F32_TOLERANCE = {"atol": 2e-5, "rtol": 1e-5} if INTERPRET else {"atol": 5e-3, "rtol": 5e-3}


def _inputs(seed, q_len=LENGTH, k_len=LENGTH, heads=HEADS, kv_heads=KV_HEADS, dim=DIM):
    """q, k, v and an output cotangent (numpy draws: eager jax ops would each cost a compile)."""
    rng = np.random.default_rng(seed)
    shapes = ((BATCH, q_len, heads, dim), (BATCH, k_len, kv_heads, dim), (BATCH, k_len, kv_heads, dim),
              (BATCH, q_len, heads, dim))
    return tuple(jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in shapes)


def _lengths_mask(lengths, length=LENGTH):
    return jnp.asarray(np.arange(length)[None, :] < np.asarray(lengths)[:, None])


def _segments(*runs):
    """Packed-utterance ids from run lengths per row, e.g. ((10, 20, 10), (25, 15))."""
    return np.array([np.repeat(np.arange(len(r)), r) for r in runs])


SEGMENTS = _segments((10, 20, 10), (25, 15))
# Queries 35..39 of row 0 belong to an utterance with no keys: fully masked rows.
Q_SEGMENTS_WITH_ORPHANS = SEGMENTS.copy()
Q_SEGMENTS_WITH_ORPHANS[0, 35:] = 7
PACKED_SPANS = np.full((BATCH, LENGTH), -1)
PACKED_SPANS[0, 4:10], PACKED_SPANS[0, 18:30], PACKED_SPANS[1, 10:25], PACKED_SPANS[1, 30:40] = 0, 1, 0, 1
MASKS = {
    "causal": MaskSpec(causal=True),
    "padding": MaskSpec(key_mask=_lengths_mask([33, 7]), key_mask_is_prefix=True),
    "segments": MaskSpec(q_segment_ids=jnp.asarray(Q_SEGMENTS_WITH_ORPHANS), kv_segment_ids=jnp.asarray(SEGMENTS)),
    "dual": MaskSpec(causal=True, span_start=jnp.asarray([5, 20]), span_end=jnp.asarray([30, 40])),
    "spans": MaskSpec(causal=True, q_span_ids=jnp.asarray(PACKED_SPANS), kv_span_ids=jnp.asarray(PACKED_SPANS)),
    # Packed UniVoice rows: one span per TTS utterance as span ids (row 0's last utterance is ASR).
    "packed": MaskSpec(
        key_mask=_lengths_mask([40, 38]),
        causal=True,
        q_segment_ids=jnp.asarray(SEGMENTS),
        kv_segment_ids=jnp.asarray(SEGMENTS),
        q_span_ids=jnp.asarray(PACKED_SPANS),
        kv_span_ids=jnp.asarray(PACKED_SPANS),
    ),
    # Every kind at once; row 0 has no keys at all.
    "combined": MaskSpec(
        key_mask=_lengths_mask([0, 29]),
        causal=True,
        q_segment_ids=jnp.asarray(SEGMENTS),
        kv_segment_ids=jnp.asarray(SEGMENTS),
        span_start=jnp.asarray([3, 12]),
        span_end=jnp.asarray([17, 33]),
    ),
}


def _jit_vjp(attend):
    """(q, k, v, cotangent) -> output and (dq, dk, dv) of sum(attend(q, k, v) * cotangent), jitted."""

    def run(q, k, v, cotangent):
        out, pull = jax.vjp(attend, q, k, v)
        return (out, *pull(cotangent.astype(out.dtype)))

    return jax.jit(run, compiler_options=FAST_COMPILE)


def _vjp(attend, q, k, v, cotangent):
    return _jit_vjp(attend)(q, k, v, cotangent)


def _kernel(mask, **kw):
    return lambda q, k, v: flash_attention(q, k, v, mask, block_sizes=BLOCKS, interpret=INTERPRET, **kw)


def _check_empty_rows_are_zero(out, mask, q_len, k_len):
    empty = ~np.asarray(dense_mask(mask, BATCH, q_len, k_len)).any(-1)  # [B,Tq]
    assert np.all(np.asarray(out, np.float32)[empty] == 0)


@pytest.mark.parametrize("kind", list(MASKS))
def test_float32_forward_and_gradients_match_reference(kind):
    mask = MASKS[kind]
    q, k, v, cotangent = _inputs(0)
    got = _vjp(_kernel(mask), q, k, v, cotangent)
    want = _vjp(lambda q, k, v: reference(q, k, v, mask), q, k, v, cotangent)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        assert np.all(np.isfinite(g)), name
        np.testing.assert_allclose(g, w, **F32_TOLERANCE, err_msg=name)
    _check_empty_rows_are_zero(got[0], mask, LENGTH, LENGTH)


@pytest.mark.parametrize("kind", ["causal", "padding", "segments", "dual"])
def test_bfloat16_is_as_accurate_as_the_bfloat16_reference(kind):
    """Errors against a float32 computation on the same bf16-rounded inputs stay within 2x the
    XLA reference's own bf16 error (and within 3% of each output's scale)."""
    mask = MASKS[kind]
    q, k, v, cotangent = (x.astype(jnp.bfloat16) for x in _inputs(1))
    got = _vjp(_kernel(mask), q, k, v, cotangent)
    xla = _vjp(lambda q, k, v: reference(q, k, v, mask), q, k, v, cotangent)
    upcast = (x.astype(jnp.float32) for x in (q, k, v, cotangent))
    truth = _vjp(lambda q, k, v: reference(q, k, v, mask), *upcast)
    for name, g, x, t in zip(("out", "dq", "dk", "dv"), got, xla, truth):
        assert g.dtype == jnp.bfloat16, name
        kernel_error = float(jnp.abs(g.astype(jnp.float32) - t).max())
        xla_error = float(jnp.abs(x.astype(jnp.float32) - t).max())
        assert kernel_error <= 2 * xla_error + 1e-3, (name, kernel_error, xla_error)
        assert kernel_error <= 0.03 * float(jnp.abs(t).max()) + 1e-3, (name, kernel_error)
    _check_empty_rows_are_zero(got[0], mask, LENGTH, LENGTH)


def test_cross_attention_with_odd_shapes():
    """Tq != Tk (queries aligned to the last keys), one key/value head per query head, head dim
    12 (zero-padded to 16 inside), a scattered (non-prefix) key mask and a custom scale."""
    q, k, v, cotangent = _inputs(2, q_len=24, k_len=40, heads=2, kv_heads=2, dim=12)
    key_mask = jnp.asarray(np.random.default_rng(3).random((BATCH, 40)) < 0.7)
    mask = MaskSpec(key_mask=key_mask, causal=True)
    got = _vjp(_kernel(mask, scale=0.3), q, k, v, cotangent)
    want = _vjp(lambda q, k, v: reference(q, k, v, mask, scale=0.3), q, k, v, cotangent)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        np.testing.assert_allclose(g, w, **F32_TOLERANCE, err_msg=name)


def test_fully_masked_blocks_are_never_read():
    """NaN in the keys/values of blocks the mask hides entirely cannot reach the output or the
    gradients, which proves those blocks are skipped (a computed-then-zeroed block would give
    0 * NaN = NaN); the same NaN in a visited block does propagate, so the probe is live."""
    mask = MaskSpec(key_mask=_lengths_mask([20, 40]))  # row 0 never needs key block 2 (32..39)
    q, k, v, cotangent = _inputs(4)
    run = _jit_vjp(_kernel(mask))
    clean = run(q, k, v, cotangent)

    def poisoned(first_bad_key):
        k_bad, v_bad = np.array(k), np.array(v)
        k_bad[0, first_bad_key:] = np.nan
        v_bad[0, first_bad_key:] = np.nan
        return run(q, jnp.asarray(k_bad), jnp.asarray(v_bad), cotangent)

    for name, c, p in zip(("out", "dq", "dk", "dv"), clean, poisoned(32)):
        np.testing.assert_array_equal(p, c, err_msg=name)
    assert np.isnan(np.asarray(poisoned(24)[0][0])).any()  # key 24 sits in visited block 1


@pytest.mark.parametrize("block_q, block_k", [(16, 16), (16, 32), (32, 16)])
@pytest.mark.parametrize("kind", list(MASKS))
def test_block_visibility_matches_the_dense_mask_reduced_per_block(kind, block_q, block_k):
    mask = MASKS[kind]
    visible = np.asarray(block_visibility(mask, BATCH, LENGTH, LENGTH, block_q, block_k))
    dense = np.asarray(dense_mask(mask, BATCH, LENGTH, LENGTH))
    num_q, num_k = -(-LENGTH // block_q), -(-LENGTH // block_k)
    padded = np.zeros((BATCH, num_q * block_q, num_k * block_k), bool)
    padded[:, :LENGTH, :LENGTH] = dense
    brute = padded.reshape(BATCH, num_q, block_q, num_k, block_k).any(axis=(2, 4))
    assert not np.any(brute & ~visible), "a block with allowed pairs would be skipped"
    if kind not in ("combined", "packed"):  # exact for each kind alone; a superset when kinds interact
        np.testing.assert_array_equal(visible, brute)


def test_visited_block_counts():
    """Causal T=64 in 16x16 blocks visits the 10 blocks on and below the diagonal of 16; the dual
    mask adds the blocks inside its span above the diagonal; padding drops whole key blocks."""
    count = lambda mask: np.asarray(block_visibility(mask, 1, 64, 64, 16, 16)).sum()  # noqa: E731
    assert count(None) == 16
    assert count(MaskSpec(causal=True)) == 10
    dual = MaskSpec(causal=True, span_start=jnp.array([16]), span_end=jnp.array([48]))
    assert count(dual) == 11  # + (q block 1, k block 2)
    assert count(MaskSpec.from_lengths(jnp.array([17]), 64)) == 8  # 4 query blocks x key blocks 0, 1


def test_bad_inputs_raise_clear_errors():
    q, k, v, _ = _inputs(5)
    with pytest.raises(ValueError, match="power of two"):
        BlockSizes(24, 16, 16, 16)
    with pytest.raises(ValueError, match="num_warps"):
        BlockSizes(num_warps=3)
    with pytest.raises(ValueError, match="num_stages"):
        BlockSizes(num_stages=0)
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        flash_attention(q.astype(jnp.float16), k.astype(jnp.float16), v.astype(jnp.float16), interpret=True)
    with pytest.raises(ValueError, match="head dim <= 256"):
        big = jnp.zeros((1, 8, 1, 512))
        flash_attention(big, big, big, interpret=True)
    if jax.default_backend() != "gpu":
        with pytest.raises(ValueError, match="interpret=True"):
            flash_attention(q, k, v)
    with pytest.raises(ValueError, match="set causal=True"):
        flash_attention(q, k, v, MaskSpec(span_start=jnp.zeros(2, int), span_end=jnp.ones(2, int)), interpret=True)


@pytest.mark.parametrize("kind, dtype", [("combined", jnp.bfloat16), ("combined", jnp.float32), ("packed", jnp.bfloat16),
                                         (None, jnp.bfloat16)])
def test_kernels_lower_to_triton_for_cuda(monkeypatch, kind, dtype):
    """Without a GPU, lowering for the "cuda" platform still runs the Pallas Triton lowering of all
    three kernels (forward, dq, dk/dv): unsupported primitives or tile shapes would fail here."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    mask = MASKS[kind] if kind else None
    q, k, v, _ = (x.astype(dtype) for x in _inputs(5))

    def loss(q, k, v):
        return flash_attention(q, k, v, mask).astype(jnp.float32).sum()

    lowered = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).trace(q, k, v).lower(lowering_platforms=("cuda",))
    assert lowered.as_text().count("__gpu$xla.gpu.triton") == 3
