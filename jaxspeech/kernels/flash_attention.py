"""Block-sparse flash attention in Pallas for speech masks, with its plain-JAX reference.

FlashAttention-2 (Dao 2023): each program owns a block of query rows and streams key/value
blocks through an online softmax, keeping a running row maximum and sum, so memory is O(T)
rather than O(T^2); the backward pass recomputes the probabilities from the saved per-row
logsumexp (two kernels: dq per query block, dk/dv per key block, no atomics). Grouped-query
heads share a key/value head: the dk/dv kernel loops over the heads of a group.

Masks come as a ``MaskSpec``. Before the kernels run, ``block_visibility`` marks which
(query block, key block) pairs contain any allowed pair, and each row of that table is compacted
into "count, then the visible block indices". A program loops only over its visible blocks, so a
fully masked block (above the causal diagonal, past a row's key length, in another packed
utterance, above the diagonal outside the dual span) costs neither a load nor a matmul. Inside a
visited block the exact mask is rebuilt from positions, int32 "codes" (segment id for real
keys, -1 for padded keys, -2 for padded query rows) and, for the dual mask, per-position span ids
(``attention_mask.span_ids``: -1 outside every span), so a packed row holds any number of spans.

Rows with no allowed key output zeros (their logsumexp is stored as +inf, which makes their
backward contribution exactly zero); ``reference`` follows the same convention.

On GPU the kernels lower through the Triton backend (selected explicitly; see docs/kernels.md);
anywhere, ``interpret=True`` runs them through the Pallas interpreter, which is how the CPU tests
check them against ``reference``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from jaxspeech.kernels.attention_mask import MaskSpec, block_visibility, check_attention_inputs, dense_mask, span_ids

SUPPORTED_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))
MAX_HEAD_DIM = 256
_LOG2E = math.log2(math.e)
_INVALID_KEY = -1
_PADDED_QUERY = -2
_NT = (((1,), (1,)), ((), ()))  # contract the last dims: a @ b.T
_TN = (((0,), (0,)), ((), ()))  # contract the first dims: a.T @ b


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tile sizes: forward (block_q x block_k) and backward (block_q_bwd x block_k_bwd), and the
    Triton launch parameters: warps per program and software-pipelining stages (None: 3 stages
    for head dim <= 64, else 2).

    Blocks are powers of two, at least 16 (the smallest Triton matmul tile); blocks larger than
    the sequence shrink to it. The defaults come from a sweep on an H200 (docs/kernels.md,
    "Tiles"): T = 4096, causal, bfloat16, head dims 64 and 128.
    """

    block_q: int = 128
    block_k: int = 64
    block_q_bwd: int = 64
    block_k_bwd: int = 64
    num_warps: int = 4
    num_stages: int | None = None

    def __post_init__(self):
        for name in ("block_q", "block_k", "block_q_bwd", "block_k_bwd"):
            size = getattr(self, name)
            if size < 16 or size & (size - 1):
                raise ValueError(f"{name} must be a power of two >= 16, got {size}")
        if self.num_warps not in (1, 2, 4, 8, 16):
            raise ValueError(f"num_warps must be one of 1, 2, 4, 8, 16, got {self.num_warps}")
        if self.num_stages is not None and self.num_stages < 1:
            raise ValueError(f"num_stages must be >= 1 or None, got {self.num_stages}")


@functools.partial(jax.jit, static_argnames=("scale",))
def reference(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: MaskSpec | None = None, *, scale: float | None = None
) -> jax.Array:
    """softmax(q k^T * scale, masked) v with the softmax in float32; the ground truth for kernels.

    q: [B,Tq,H,D]; k, v: [B,Tk,Hkv,D] with H a multiple of Hkv (grouped-query attention:
    query head h reads key/value head h // (H // Hkv)). Returns [B,Tq,H,D] in q's dtype.
    scale defaults to 1/sqrt(D). A query with no allowed key gets zeros (and zero gradients).
    """
    check_attention_inputs(q, k, v, mask)
    allowed = None if mask is None or mask.allows_all else dense_mask(mask, q.shape[0], q.shape[1], k.shape[1])
    return _dense_attention(q, k, v, allowed, scale)


def blocked_reference(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: MaskSpec | None = None, *, scale: float | None = None,
    block_logits: int = 2**20,
) -> jax.Array:
    """``reference`` one (batch row, key/value head) at a time, in chunks of query rows whose
    logits [group, chunk, Tk] hold at most ``block_logits`` entries (``lax.map``; the same maths,
    normalised after the product with v).

    The dense reference materialises [B,H,Tq,Tk] logits and streams them through memory several
    times (scale, max, exp, sum, divide); a block of ~2^20 entries stays in a CPU core's cache.
    XLA:CPU then also fuses the logits' matmul with the softmax's exp (YNNPACK). Whisper's encoder
    self-attention ([B,1500,6,64], 2 cores): 21-25 ms at B=1 and ~100 ms at B=4, against 55 and
    250 ms in [B,H,256,Tk] pieces and 85 and 390 ms dense (torch's fused SDPA: 13.5 ms at B=1).
    Smaller blocks lose more to per-operation overhead than they gain in cache (2^18: 38 ms).
    Tq need not be a multiple of the chunk (padded tail rows are computed and dropped).
    """
    check_attention_inputs(q, k, v, mask)
    if block_logits < 1:
        raise ValueError(f"block_logits must be >= 1, got {block_logits}")
    batch, q_len, heads, head_dim = q.shape
    k_len, kv_heads = k.shape[1], k.shape[2]
    group = heads // kv_heads
    pieces = -(-q_len // max(1, block_logits // (group * k_len)))
    chunk = -(-q_len // pieces)  # the fewest pieces within the budget, as even as possible
    pad = pieces * chunk - q_len
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    # One piece per (batch row, key/value head): q [B*Hkv, n, G, chunk, D], k and v [B*Hkv, Tk, D].
    q_pieces = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0))).reshape(batch, pieces, chunk, kv_heads, group, head_dim)
    q_pieces = jnp.transpose(q_pieces, (0, 3, 1, 4, 2, 5)).reshape(batch * kv_heads, pieces, group, chunk, head_dim)
    k_pieces, v_pieces = (jnp.swapaxes(x, 1, 2).reshape(batch * kv_heads, k_len, head_dim) for x in (k, v))
    allowed = None  # [B, n, chunk, Tk] bool, shared by the heads of a batch row
    if mask is not None and not mask.allows_all:
        allowed = jnp.pad(dense_mask(mask, batch, q_len, k_len), ((0, 0), (0, pad), (0, 0)))
        allowed = allowed.reshape(batch, pieces, chunk, k_len)

    def one_chunk(q_chunk, allowed_chunk, k_piece, v_piece):  # [G, chunk, D], [chunk, Tk], [Tk, D] -> [G, chunk, D]
        logits = jnp.matmul(q_chunk, k_piece.T, preferred_element_type=jnp.float32).astype(jnp.float32) * scale
        unnormalised, total = _unnormalised_softmax(logits, allowed_chunk)
        # Normalising after the product divides [G, chunk, D] instead of [G, chunk, Tk] entries.
        return (jnp.matmul(unnormalised.astype(v_piece.dtype), v_piece) / total).astype(q_chunk.dtype)

    def one_piece(piece):  # index, q [n, G, chunk, D], k and v [Tk, D] -> [n, G, chunk, D]
        index, q_piece, k_piece, v_piece = piece
        allowed_row = None if allowed is None else allowed[index // kv_heads]
        return lax.map(lambda c: one_chunk(*c, k_piece, v_piece), (q_piece, allowed_row))

    out = lax.map(one_piece, (jnp.arange(batch * kv_heads), q_pieces, k_pieces, v_pieces))
    out = jnp.transpose(out.reshape(batch, kv_heads, pieces, group, chunk, head_dim), (0, 2, 4, 1, 3, 5))
    out = out.reshape(batch, pieces * chunk, heads, head_dim)
    return out[:, :q_len]


def _dense_attention(q, k, v, allowed: jax.Array | None, scale: float | None) -> jax.Array:
    """The body of ``reference``; allowed: [B,Tq,Tk] bool or None (every pair allowed)."""
    batch, q_len, heads, head_dim = q.shape
    kv_heads = k.shape[2]
    group = heads // kv_heads
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    q_grouped = q.reshape(batch, q_len, kv_heads, group, head_dim)
    logits = jnp.einsum("bqhgd,bkhd->bhgqk", q_grouped, k, preferred_element_type=jnp.float32)
    unnormalised, total = _unnormalised_softmax(
        logits.astype(jnp.float32) * scale, None if allowed is None else allowed[:, None, None])
    out = jnp.einsum("bhgqk,bkhd->bqhgd", (unnormalised / total).astype(v.dtype), v)
    return out.reshape(batch, q_len, heads, head_dim).astype(q.dtype)


def _unnormalised_softmax(logits: jax.Array, allowed: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """(exp(logits - row max) where ``allowed``, else 0; the row sums with 0 replaced by 1) over
    the last axis of float32 ``logits``; ``allowed``: broadcastable bool, or None (everywhere).
    Their quotient is the softmax; a row with no allowed entry gets zeros (and zero gradients)."""
    if allowed is not None:
        logits = jnp.where(allowed, logits, -jnp.inf)
    # Softmax is shift invariant, so the shift needs no gradient.
    row_max = lax.stop_gradient(logits.max(-1, keepdims=True))
    if allowed is not None:  # a row with no allowed entry shifts by 0: every exp is exactly 0
        row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
    unnormalised = jnp.exp(logits - row_max)
    total = unnormalised.sum(-1, keepdims=True)  # >= 1 where some entry is allowed (its exp(0))
    if allowed is not None:
        total = jnp.where(total == 0, 1.0, total)
    return unnormalised, total


def unsupported_reason(q: jax.Array, k: jax.Array, v: jax.Array, *, interpret: bool = False) -> str | None:
    """Why ``flash_attention`` cannot run these inputs here, or None when it can.

    Every MaskSpec kind is supported; the limits are dtype, head dim and platform.
    """
    dtypes = {jnp.dtype(x.dtype) for x in (q, k, v)}
    if len(dtypes) != 1 or dtypes.pop() not in SUPPORTED_DTYPES:
        return f"the Pallas kernel takes float32 or bfloat16 q/k/v of one dtype, got {q.dtype}/{k.dtype}/{v.dtype}"
    if q.shape[-1] > MAX_HEAD_DIM:
        return f"the Pallas kernel supports head dim <= {MAX_HEAD_DIM}, got {q.shape[-1]}"
    if not interpret and jax.default_backend() != "gpu":
        return f"the Pallas kernel is compiled for GPUs only (backend is {jax.default_backend()}); use interpret=True"
    return None


@dataclasses.dataclass(frozen=True)
class _Static:
    """Everything the kernels specialise on (hashable: a custom_vjp non-differentiable argument)."""

    blocks: BlockSizes
    group: int
    causal: bool
    has_codes: bool
    has_span: bool
    q_offset: int  # absolute position of query row 0: Tk - Tq for the unpadded lengths
    k_len: int  # unpadded key length
    scale: float
    interpret: bool


def _next_power_of_2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _fit_block(block: int, length: int) -> int:
    return min(block, max(16, _next_power_of_2(length)))


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _pad_to(x: jax.Array, axis: int, size: int, value=0) -> jax.Array:
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, widths, constant_values=value)


def _visit_table(visible: jax.Array) -> jax.Array:
    """[B,R,C] bool -> [B,R,1+C] int32: the count of visible columns, then their indices in order."""
    count = visible.sum(-1, dtype=jnp.int32)
    order = jnp.argsort(~visible, axis=-1, stable=True).astype(jnp.int32)
    return jnp.concatenate([count[..., None], order], axis=-1)


def _block_mask(cfg: _Static, q_start, k_start, shape, q_code, kv_code, q_span, kv_span):
    """[bq,bk] bool of allowed pairs inside one visited block, or None when all are allowed."""
    terms = []
    k_pos = k_start + lax.broadcasted_iota(jnp.int32, shape, 1)
    if cfg.causal:
        q_pos = q_start + cfg.q_offset + lax.broadcasted_iota(jnp.int32, shape, 0)
        visible = k_pos <= q_pos
        if cfg.has_span:
            visible |= (q_span[:, None] == kv_span[None, :]) & (q_span[:, None] >= 0)
        terms.append(visible)
    if cfg.has_codes:
        terms.append(q_code[:, None] == kv_code[None, :])
    elif cfg.k_len % shape[1]:
        terms.append(k_pos < cfg.k_len)  # keys padded up to a whole block
    return functools.reduce(operator.and_, terms) if terms else None


def _log2_scores(q, k, cfg: _Static, mask):
    """Scores in base-2 units (exp2 is the cheap exponential on GPUs), -inf where masked."""
    s = lax.dot_general(q, k, _NT, preferred_element_type=jnp.float32) * (cfg.scale * _LOG2E)
    return s if mask is None else jnp.where(mask, s, -jnp.inf)


def _forward_kernel(table_ref, q_code_ref, kv_code_ref, q_span_ref, kv_span_ref, q_ref, k_ref, v_ref, o_ref, lse_ref,
                    *, cfg):
    block_q, block_k = cfg.blocks.block_q, cfg.blocks.block_k
    q_start = pl.program_id(2) * block_q
    q = q_ref[...]
    q_code = q_code_ref[...] if cfg.has_codes else None
    q_span = q_span_ref[...] if cfg.has_span else None

    def visit(i, carry):
        acc, row_max, row_sum = carry
        k_start = pl.multiple_of(table_ref[i + 1] * block_k, block_k)
        keys = pl.ds(k_start, block_k)
        kv_code = kv_code_ref[keys] if cfg.has_codes else None
        kv_span = kv_span_ref[keys] if cfg.has_span else None
        mask = _block_mask(cfg, q_start, k_start, (block_q, block_k), q_code, kv_code, q_span, kv_span)
        s = _log2_scores(q, k_ref[pl.ds(k_start, block_k), :], cfg, mask)
        new_max = jnp.maximum(row_max, s.max(axis=1))
        # Until a row has seen an allowed key its max is -inf; shifting by 0 keeps exp2 at 0.
        shift = jnp.where(new_max == -jnp.inf, 0.0, new_max)
        rescale = jnp.exp2(row_max - shift)
        p = jnp.exp2(s - shift[:, None])
        v = v_ref[pl.ds(k_start, block_k), :]
        acc = acc * rescale[:, None] + jnp.dot(p.astype(v.dtype), v, preferred_element_type=jnp.float32)
        return acc, new_max, row_sum * rescale + p.sum(axis=1)

    init = (
        jnp.zeros(q.shape, jnp.float32),
        jnp.full((block_q,), -jnp.inf, jnp.float32),
        jnp.zeros((block_q,), jnp.float32),
    )
    acc, row_max, row_sum = lax.fori_loop(0, table_ref[0], visit, init)
    empty = row_sum == 0
    o_ref[...] = (acc / jnp.where(empty, 1.0, row_sum)[:, None]).astype(o_ref.dtype)
    lse_ref[...] = jnp.where(empty, jnp.inf, row_max + jnp.log2(row_sum))


def _dq_kernel(table_ref, q_code_ref, kv_code_ref, q_span_ref, kv_span_ref, q_ref, k_ref, v_ref, do_ref, lse_ref,
               delta_ref, dq_ref, *, cfg):
    block_q, block_k = cfg.blocks.block_q_bwd, cfg.blocks.block_k_bwd
    q_start = pl.program_id(2) * block_q
    q, do = q_ref[...], do_ref[...]
    lse, delta = lse_ref[...], delta_ref[...]
    q_code = q_code_ref[...] if cfg.has_codes else None
    q_span = q_span_ref[...] if cfg.has_span else None

    def visit(i, dq):
        k_start = pl.multiple_of(table_ref[i + 1] * block_k, block_k)
        keys = pl.ds(k_start, block_k)
        kv_code = kv_code_ref[keys] if cfg.has_codes else None
        kv_span = kv_span_ref[keys] if cfg.has_span else None
        mask = _block_mask(cfg, q_start, k_start, (block_q, block_k), q_code, kv_code, q_span, kv_span)
        k = k_ref[pl.ds(k_start, block_k), :]
        p = jnp.exp2(_log2_scores(q, k, cfg, mask) - lse[:, None])
        dp = lax.dot_general(do, v_ref[pl.ds(k_start, block_k), :], _NT, preferred_element_type=jnp.float32)
        ds = p * (dp - delta[:, None])
        return dq + jnp.dot(ds.astype(k.dtype), k, preferred_element_type=jnp.float32)

    dq = lax.fori_loop(0, table_ref[0], visit, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = (dq * cfg.scale).astype(dq_ref.dtype)


def _dkdv_kernel(table_ref, q_code_ref, kv_code_ref, q_span_ref, kv_span_ref, q_ref, k_ref, v_ref, do_ref, lse_ref,
                 delta_ref, dk_ref, dv_ref, *, cfg):
    block_q, block_k = cfg.blocks.block_q_bwd, cfg.blocks.block_k_bwd
    k_start = pl.program_id(2) * block_k
    k, v = k_ref[...], v_ref[...]
    kv_code = kv_code_ref[...] if cfg.has_codes else None
    kv_span = kv_span_ref[...] if cfg.has_span else None

    def visit(i, carry):
        dk, dv = carry
        q_start = pl.multiple_of(table_ref[i + 1] * block_q, block_q)
        rows = pl.ds(q_start, block_q)
        q_code = q_code_ref[rows] if cfg.has_codes else None
        q_span = q_span_ref[rows] if cfg.has_span else None
        mask = _block_mask(cfg, q_start, k_start, (block_q, block_k), q_code, kv_code, q_span, kv_span)
        for g in range(cfg.group):  # the query heads that read this key/value head
            q, do = q_ref[rows, g, :], do_ref[rows, g, :]
            p = jnp.exp2(_log2_scores(q, k, cfg, mask) - lse_ref[g, rows][:, None])
            dv += lax.dot_general(p.astype(do.dtype), do, _TN, preferred_element_type=jnp.float32)
            dp = lax.dot_general(do, v, _NT, preferred_element_type=jnp.float32)
            ds = p * (dp - delta_ref[g, rows][:, None])
            dk += lax.dot_general(ds.astype(q.dtype), q, _TN, preferred_element_type=jnp.float32)
        return dk, dv

    zeros = jnp.zeros(k.shape, jnp.float32)
    dk, dv = lax.fori_loop(0, table_ref[0], visit, (zeros, zeros))
    dk_ref[...] = (dk * cfg.scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def _compiler_params(cfg: _Static, head_dim: int):
    if cfg.interpret:
        return None
    # Imported here: the Triton module is only needed (and only meaningful) when compiling for a GPU.
    from jax.experimental.pallas import triton as pltriton

    stages = cfg.blocks.num_stages or (3 if head_dim <= 64 else 2)
    return pltriton.CompilerParams(num_warps=cfg.blocks.num_warps, num_stages=stages)


def _forward(cfg: _Static, q, k, v, aux):
    batch, q_len, heads, head_dim = q.shape
    k_len = k.shape[1]
    block_q, block_k = cfg.blocks.block_q, cfg.blocks.block_k
    num_k = k_len // block_k
    group = cfg.group
    rows = lambda b, h, i: (b, i, h, 0)  # noqa: E731
    return pl.pallas_call(
        functools.partial(_forward_kernel, cfg=cfg),
        grid=(batch, heads, q_len // block_q),
        in_specs=[
            pl.BlockSpec((None, None, 1 + num_k), lambda b, h, i: (b, i, 0)),
            pl.BlockSpec((None, block_q), lambda b, h, i: (b, i)),
            pl.BlockSpec((None, k_len), lambda b, h, i: (b, 0)),
            pl.BlockSpec((None, block_q), lambda b, h, i: (b, i)),
            pl.BlockSpec((None, k_len), lambda b, h, i: (b, 0)),
            pl.BlockSpec((None, block_q, None, head_dim), rows),
            pl.BlockSpec((None, k_len, None, head_dim), lambda b, h, i: (b, 0, h // group, 0)),
            pl.BlockSpec((None, k_len, None, head_dim), lambda b, h, i: (b, 0, h // group, 0)),
        ],
        out_specs=[
            pl.BlockSpec((None, block_q, None, head_dim), rows),
            pl.BlockSpec((None, None, block_q), lambda b, h, i: (b, h, i)),
        ],
        out_shape=[
            jax.ShapeDtypeStruct(q.shape, q.dtype),
            jax.ShapeDtypeStruct((batch, heads, q_len), jnp.float32),
        ],
        compiler_params=_compiler_params(cfg, head_dim),
        interpret=cfg.interpret,
        name="flash_attention_forward",
    )(aux["forward_table"], aux["q_codes"], aux["kv_codes"], aux["q_spans"], aux["kv_spans"], q, k, v)


def _backward(cfg: _Static, residuals, d_out):
    q, k, v, aux, out, lse = residuals
    batch, q_len, heads, head_dim = q.shape
    k_len, kv_heads = k.shape[1], k.shape[2]
    block_q, block_k = cfg.blocks.block_q_bwd, cfg.blocks.block_k_bwd
    num_q, num_k, group = q_len // block_q, k_len // block_k, cfg.group
    delta = jnp.einsum("bqhd,bqhd->bhq", out.astype(jnp.float32), d_out.astype(jnp.float32))
    params = _compiler_params(cfg, head_dim)

    q_rows = lambda b, h, i: (b, i, h, 0)  # noqa: E731
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, cfg=cfg),
        grid=(batch, heads, num_q),
        in_specs=[
            pl.BlockSpec((None, None, 1 + num_k), lambda b, h, i: (b, i, 0)),
            pl.BlockSpec((None, block_q), lambda b, h, i: (b, i)),
            pl.BlockSpec((None, k_len), lambda b, h, i: (b, 0)),
            pl.BlockSpec((None, block_q), lambda b, h, i: (b, i)),
            pl.BlockSpec((None, k_len), lambda b, h, i: (b, 0)),
            pl.BlockSpec((None, block_q, None, head_dim), q_rows),
            pl.BlockSpec((None, k_len, None, head_dim), lambda b, h, i: (b, 0, h // group, 0)),
            pl.BlockSpec((None, k_len, None, head_dim), lambda b, h, i: (b, 0, h // group, 0)),
            pl.BlockSpec((None, block_q, None, head_dim), q_rows),
            pl.BlockSpec((None, None, block_q), lambda b, h, i: (b, h, i)),
            pl.BlockSpec((None, None, block_q), lambda b, h, i: (b, h, i)),
        ],
        out_specs=pl.BlockSpec((None, block_q, None, head_dim), q_rows),
        out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        compiler_params=params,
        interpret=cfg.interpret,
        name="flash_attention_dq",
    )(aux["dq_table"], aux["q_codes"], aux["kv_codes"], aux["q_spans"], aux["kv_spans"], q, k, v, d_out, lse, delta)

    k_rows = lambda b, j, i: (b, i, j, 0)  # noqa: E731
    all_queries = lambda b, j, i: (b, 0, j, 0)  # noqa: E731
    dk, dv = pl.pallas_call(
        functools.partial(_dkdv_kernel, cfg=cfg),
        grid=(batch, kv_heads, num_k),
        in_specs=[
            pl.BlockSpec((None, None, 1 + num_q), lambda b, j, i: (b, i, 0)),
            pl.BlockSpec((None, q_len), lambda b, j, i: (b, 0)),
            pl.BlockSpec((None, block_k), lambda b, j, i: (b, i)),
            pl.BlockSpec((None, q_len), lambda b, j, i: (b, 0)),
            pl.BlockSpec((None, block_k), lambda b, j, i: (b, i)),
            pl.BlockSpec((None, q_len, group, head_dim), all_queries),
            pl.BlockSpec((None, block_k, None, head_dim), k_rows),
            pl.BlockSpec((None, block_k, None, head_dim), k_rows),
            pl.BlockSpec((None, q_len, group, head_dim), all_queries),
            pl.BlockSpec((None, group, q_len), lambda b, j, i: (b, j, 0)),
            pl.BlockSpec((None, group, q_len), lambda b, j, i: (b, j, 0)),
        ],
        out_specs=[
            pl.BlockSpec((None, block_k, None, head_dim), k_rows),
            pl.BlockSpec((None, block_k, None, head_dim), k_rows),
        ],
        out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
        compiler_params=params,
        interpret=cfg.interpret,
        name="flash_attention_dkdv",
    )(aux["dkdv_table"], aux["q_codes"], aux["kv_codes"], aux["q_spans"], aux["kv_spans"], q, k, v, d_out, lse,
      delta)
    return dq, dk, dv, None


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(cfg: _Static, q, k, v, aux):
    return _forward(cfg, q, k, v, aux)[0]


def _flash_forward(cfg: _Static, q, k, v, aux):
    out, lse = _forward(cfg, q, k, v, aux)
    return out, (q, k, v, aux, out, lse)


_flash.defvjp(_flash_forward, _backward)


@functools.partial(jax.jit, static_argnames=("scale", "block_sizes", "interpret"))
def flash_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: MaskSpec | None = None,
    *,
    scale: float | None = None,
    block_sizes: BlockSizes = BlockSizes(),
    interpret: bool = False,
) -> jax.Array:
    """Flash attention with every ``MaskSpec`` kind; same maths and shapes as ``reference``.

    q: [B,Tq,H,D]; k, v: [B,Tk,Hkv,D]; returns [B,Tq,H,D] in q's dtype; differentiable in q, k, v.
    Lengths that do not divide the blocks are padded internally (padding is masked), head dims
    are zero-padded to a power of two. interpret: run through the Pallas interpreter (any backend).
    """
    check_attention_inputs(q, k, v, mask)
    reason = unsupported_reason(q, k, v, interpret=interpret)
    if reason:
        raise ValueError(reason)
    mask = MaskSpec() if mask is None else mask
    batch, q_len, heads, head_dim = q.shape
    k_len = k.shape[1]
    blocks = dataclasses.replace(
        block_sizes,
        block_q=_fit_block(block_sizes.block_q, q_len),
        block_k=_fit_block(block_sizes.block_k, k_len),
        block_q_bwd=_fit_block(block_sizes.block_q_bwd, q_len),
        block_k_bwd=_fit_block(block_sizes.block_k_bwd, k_len),
    )
    q_pad = _round_up(q_len, max(blocks.block_q, blocks.block_q_bwd))
    k_pad = _round_up(k_len, max(blocks.block_k, blocks.block_k_bwd))
    dim_pad = max(16, _next_power_of_2(head_dim))
    has_codes = mask.key_mask is not None or mask.has_segments
    cfg = _Static(
        blocks=blocks,
        group=heads // k.shape[2],
        causal=mask.causal,
        has_codes=has_codes,
        has_span=mask.has_span,
        q_offset=k_len - q_len,
        k_len=k_len,
        scale=1.0 / math.sqrt(head_dim) if scale is None else float(scale),
        interpret=interpret,
    )

    q_codes = jnp.zeros((batch, q_len), jnp.int32)
    kv_codes = jnp.zeros((batch, k_len), jnp.int32)
    if mask.has_segments:
        q_codes, kv_codes = mask.q_segment_ids.astype(jnp.int32), mask.kv_segment_ids.astype(jnp.int32)
    if mask.key_mask is not None:
        kv_codes = jnp.where(mask.key_mask, kv_codes, _INVALID_KEY)
    q_spans, kv_spans = jnp.zeros((batch, q_len), jnp.int32), jnp.zeros((batch, k_len), jnp.int32)
    if mask.has_span:
        q_spans, kv_spans = span_ids(mask, q_len, k_len)

    def padded_visibility(block_q, block_k):
        visible = block_visibility(mask, batch, q_len, k_len, block_q, block_k)
        return _pad_to(_pad_to(visible, 1, q_pad // block_q, False), 2, k_pad // block_k, False)

    backward_visible = padded_visibility(blocks.block_q_bwd, blocks.block_k_bwd)
    aux = {
        "forward_table": _visit_table(padded_visibility(blocks.block_q, blocks.block_k)),
        "dq_table": _visit_table(backward_visible),
        "dkdv_table": _visit_table(backward_visible.transpose(0, 2, 1)),
        "q_codes": _pad_to(q_codes, 1, q_pad, _PADDED_QUERY),
        "kv_codes": _pad_to(kv_codes, 1, k_pad, _INVALID_KEY),
        "q_spans": _pad_to(q_spans, 1, q_pad, -1),
        "kv_spans": _pad_to(kv_spans, 1, k_pad, -1),
    }
    pad = lambda x, length: _pad_to(_pad_to(x, 1, length), 3, dim_pad)  # noqa: E731
    out = _flash(cfg, pad(q, q_pad), pad(k, k_pad), pad(v, k_pad), aux)
    return out[:, :q_len, :, :head_dim]
