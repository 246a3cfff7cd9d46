"""Scaled dot-product attention: the single entry point every model calls, plus rotary embeddings.

``attention`` dispatches on ``impl``; ``reference_attention`` is the plain-JAX definition that
the kernels are tested against. Masks are described by a small ``MaskSpec`` (causal, key
padding, packed-utterance segment ids, the UniVoice dual span) rather than a dense [B,H,Tq,Tk]
array so that kernels can exploit their structure. Both live in ``jaxspeech.kernels`` (kernels
sit below nn) and are re-exported here.
"""

from __future__ import annotations

import functools
import warnings

import chex
import jax
import jax.numpy as jnp

from jaxspeech.kernels import flash_attention as flash
from jaxspeech.kernels.attention_mask import MaskSpec, check_attention_inputs

__all__ = ["MaskSpec", "attention", "reference_attention", "resolve_impl", "rotary_embedding"]

IMPLS = ("auto", "xla", "chunked", "pallas", "cudnn")
reference_attention = flash.reference
BLOCK_LOGITS = 2**20  # logits per piece of impl="chunked" (flash.blocked_reference)
# "auto" off GPU: "chunked" from this many query rows. Measured on 2 CPU cores, XLA:CPU, jax 0.10.2
# (forward / gradient, ms; [B,T,H/Hkv,D], Tq=Tk): [16,200,4,64] dense 15/39 vs chunked 10/50;
# [8,400,4,36] 23/61 vs 10/64; [4,700,2,64] 15/52 vs 9/47; [2,1024,8/2,64] 147/292 vs 31/287;
# [4,1500,6,64] 387/1075 vs 103/764; [1,4096,4,64] 612/1690 vs 127/1242.
CHUNKED_FROM = 512
_CUDNN_DTYPES = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))
_CUDNN_MAX_HEAD_DIM = 128


def _cudnn_unsupported_reason(q: jax.Array, k: jax.Array, v: jax.Array, mask: MaskSpec | None) -> str | None:
    """Why ``jax.nn.dot_product_attention(implementation="cudnn")`` cannot run this call, or None."""
    if jax.default_backend() != "gpu":
        return f"cuDNN attention needs a CUDA GPU (backend is {jax.default_backend()})"
    dtypes = {jnp.dtype(x.dtype) for x in (q, k, v)}
    if len(dtypes) != 1 or dtypes.pop() not in _CUDNN_DTYPES:
        return f"cuDNN attention takes float16 or bfloat16 q/k/v of one dtype, got {q.dtype}/{k.dtype}/{v.dtype}"
    if q.shape[-1] > _CUDNN_MAX_HEAD_DIM:
        return f"cuDNN attention is used for head dim <= {_CUDNN_MAX_HEAD_DIM}, got {q.shape[-1]}"
    if mask is None:
        return None
    if mask.has_segments or mask.has_span:
        return "cuDNN attention supports only causal and key-padding masks (not segment ids or a dual span)"
    if mask.key_mask is not None and not mask.key_mask_is_prefix:
        return "cuDNN attention needs key padding as lengths: build the mask with MaskSpec.from_lengths"
    if mask.causal and q.shape[1] != k.shape[1]:
        return "cuDNN's causal mask is aligned to the first key; ours to the last, so Tq must equal Tk"
    return None


def _cudnn_attention(q, k, v, mask: MaskSpec | None, scale: float | None) -> jax.Array:
    lengths = None
    if mask is not None and mask.key_mask is not None:
        lengths = mask.key_mask.sum(-1, dtype=jnp.int32)  # exact: the mask is a prefix
    return jax.nn.dot_product_attention(
        q, k, v, scale=scale, is_causal=mask is not None and mask.causal,
        key_value_seq_lengths=lengths, implementation="cudnn",
    )


def resolve_impl(
    impl: str, q: jax.Array, k: jax.Array, v: jax.Array, mask: MaskSpec | None, *, interpret: bool = False
) -> tuple[str, str | None]:
    """The implementation ``attention`` will run, and why it fell back to "xla" (None if it did not).

    "auto": on GPU cuDNN when it supports the mask and dtype, else the Pallas kernel, else the
    reference (with the reason); on CPU "chunked" from CHUNKED_FROM query rows (its blocks are
    sized for CPU caches), else the reference; elsewhere (TPU) the reference. An explicit
    "pallas" or "cudnn" that cannot run raises ValueError with the reason.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown attention impl {impl!r}; available: {IMPLS}")
    if interpret and impl != "pallas":
        raise ValueError(
            f"interpret=True runs the Pallas kernel in the interpreter: it needs impl='pallas', got {impl!r}")
    if impl in ("xla", "chunked"):
        return impl, None
    if impl == "pallas":
        reason = flash.unsupported_reason(q, k, v, interpret=interpret)
        if reason:
            raise ValueError(f"impl='pallas' cannot run this call: {reason}")
        return "pallas", None
    if impl == "cudnn":
        reason = _cudnn_unsupported_reason(q, k, v, mask)
        if reason:
            raise ValueError(f"impl='cudnn' cannot run this call: {reason}")
        return "cudnn", None
    if jax.default_backend() == "cpu":
        return ("chunked" if q.shape[1] >= CHUNKED_FROM else "xla"), None
    if jax.default_backend() != "gpu":
        return "xla", None
    cudnn_reason = _cudnn_unsupported_reason(q, k, v, mask)
    if cudnn_reason is None:
        return "cudnn", None
    pallas_reason = flash.unsupported_reason(q, k, v)
    if pallas_reason is None:
        return "pallas", None
    return "xla", f"{pallas_reason}; {cudnn_reason}"


@functools.lru_cache(maxsize=None)
def _warn_fallback_once(reason: str) -> None:
    warnings.warn(f"attention(impl='auto') falls back to the XLA reference: {reason}", stacklevel=3)


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: MaskSpec | None = None,
    *,
    impl: str = "auto",
    scale: float | None = None,
    interpret: bool = False,
) -> jax.Array:
    """Multi-head (optionally grouped-query) attention. Shapes as in ``reference_attention``.

    impl: "auto" (see ``resolve_impl``), "xla" (``reference_attention``), "chunked" (the same
    maths one head and BLOCK_LOGITS logits at a time, ``flash.blocked_reference``: faster on CPU
    for long sequences), "pallas" (block-sparse
    flash attention, ``jaxspeech.kernels.flash_attention``) or "cudnn"
    (``jax.nn.dot_product_attention``; causal and length padding only).
    interpret: with impl="pallas", run the kernel through the Pallas interpreter (CPU tests).
    Under "auto" an unsupported dtype/mask falls back to the reference with a one-time warning.
    """
    check_attention_inputs(q, k, v, mask)
    chosen, fallback = resolve_impl(impl, q, k, v, mask, interpret=interpret)
    if fallback:
        _warn_fallback_once(fallback)
    if chosen == "pallas":
        return flash.flash_attention(q, k, v, mask, scale=scale, interpret=interpret)
    if chosen == "cudnn":
        return _cudnn_attention(q, k, v, mask, scale)
    if chosen == "chunked":
        return flash.blocked_reference(q, k, v, mask, scale=scale, block_logits=BLOCK_LOGITS)
    return reference_attention(q, k, v, mask, scale=scale)


def rotary_embedding(x: jax.Array, positions: jax.Array, *, base: float = 10000.0) -> jax.Array:
    """Rotary position embedding (Su et al. 2021, RoFormer), half-split (GPT-NeoX) layout.

    x: [B,T,H,D] with D even; positions: [T] or [B,T] integer positions. Channel pairs
    (i, i + D/2) are rotated by angle position * base**(-2i/D), so the dot product of a rotated
    query and key depends only on their position difference. Computed in float32.
    """
    chex.assert_rank(x, 4)
    head_dim = x.shape[-1]
    if head_dim % 2:
        raise ValueError(f"rotary embedding needs an even head dim, got {head_dim}")
    half = head_dim // 2
    inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    positions = jnp.asarray(positions, jnp.float32)
    if positions.ndim == 1:
        positions = positions[None, :]
    angles = positions[:, :, None, None] * inv_freq  # [B|1, T, 1, D/2]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return rotated.astype(x.dtype)
