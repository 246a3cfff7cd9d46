"""Monotonic alignment search (Glow-TTS, Kim et al. 2020; as used by Grad-TTS and Matcha-TTS).

Finds the hard alignment of mel frames to text tokens that maximises the summed log-likelihood
under the constraints that every frame goes to exactly one token, tokens are visited in order
and each token gets at least one frame. The dynamic programme
``Q[x, y] = L[x, y] + max(Q[x, y - 1], Q[x - 1, y - 1])`` runs as a ``lax.scan`` over mel
frames with vector ops over tokens, O(T_text x T_mel) work, and the backtrack is a second scan.
Ties break as in Matcha's Cython ``maximum_path``: backtracking stays on the current token
unless moving to the previous one is strictly better.

``reference`` is the plain-JAX definition and the ground truth. Two faster implementations give
bit-identical paths (same float32 operations in the same order, same tie-breaking):

- ``scan_alignment`` (impl "xla"): the same scans, but the backtrack emits one token index per
  frame instead of a one-hot row, and the path is expanded from those indices in one fused op.
- ``pallas_alignment`` (impl "pallas"): a Pallas kernel with one program per utterance that runs
  the whole DP and the backtrack in one launch (Triton lowering on GPU; ``interpret=True``
  anywhere), instead of 2 x T_mel dependent XLA loop steps.

``monotonic_alignment`` is the checked entry point that dispatches between them. All take masks,
not lengths: padding is ignored whatever it holds.
"""

from __future__ import annotations

import math

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl

IMPLS = ("auto", "xla", "pallas")


def reference(log_likelihood: jax.Array, text_mask: jax.Array, mel_mask: jax.Array) -> jax.Array:
    """Maximum-likelihood monotonic path. Plain JAX, no input checks (see ``monotonic_alignment``).

    log_likelihood: [B,T_text,T_mel]; text_mask: [B,T_text], mel_mask: [B,T_mel] bool,
    right-padded, with at most as many valid tokens as valid frames. Returns the path
    [B,T_text,T_mel] float32 of 0/1, zero on padding.
    """
    value = jax.lax.stop_gradient(log_likelihood).astype(jnp.float32)
    valid = text_mask[:, :, None] & mel_mask[:, None, :]
    value = jnp.where(valid, value, 0.0)  # padding may hold anything, NaN included
    batch, n_text, n_mel = value.shape
    text_len = jnp.sum(text_mask, axis=1, dtype=jnp.int32)
    mel_len = jnp.sum(mel_mask, axis=1, dtype=jnp.int32)

    # Forward DP over frames. Q stays -inf above the diagonal (token x needs x + 1 frames first),
    # and the path may enter token 0 only at frame 0. Each step also records, per token, whether
    # arriving from the previous token beat staying, which is all the backtrack needs.
    def forward(q_prev, inputs):
        frame, value_y = inputs
        start = jnp.where(frame == 0, 0.0, -jnp.inf)
        q_advance = jnp.concatenate([jnp.full((batch, 1), start), q_prev[:, :-1]], axis=1)
        q = value_y + jnp.maximum(q_prev, q_advance)
        return q, q_prev < q_advance

    q_init = jnp.full((batch, n_text), -jnp.inf, jnp.float32)
    frames = jnp.arange(n_mel)
    _, advance = jax.lax.scan(forward, q_init, (frames, jnp.moveaxis(value, 2, 0)))  # [T_mel,B,T_text]

    # Backtrack from (last token, last frame) of each utterance; frames past its end are skipped.
    def backward(token, inputs):
        frame, advance_y = inputs
        active = frame < mel_len
        row = jax.nn.one_hot(token, n_text, dtype=jnp.float32) * active[:, None]
        came_from_previous = jnp.take_along_axis(advance_y, token[:, None], axis=1)[:, 0]
        # token == frame forces the move even when every score ties at -inf, so that the path
        # stays a valid alignment (each earlier token still gets a frame).
        move = active & (token > 0) & ((token == frame) | came_from_previous)
        return token - move.astype(jnp.int32), row

    _, rows = jax.lax.scan(backward, text_len - 1, (frames, advance), reverse=True)
    return jnp.moveaxis(rows, 0, 2)


def _path_from_tokens(tokens: jax.Array, n_text: int, mel_mask: jax.Array) -> jax.Array:
    """[B,T_mel] token index per frame (anything on padded frames) -> 0/1 path [B,T_text,T_mel]."""
    path = (tokens[:, None, :] == jnp.arange(n_text, dtype=jnp.int32)[None, :, None]) & mel_mask[:, None, :]
    return path.astype(jnp.float32)


@jax.jit
def scan_alignment(log_likelihood: jax.Array, text_mask: jax.Array, mel_mask: jax.Array) -> jax.Array:
    """``reference`` with a leaner backtrack; same arguments, bit-identical path, no input checks.

    The forward scan is the reference's. The backtrack carries and emits only the token index
    per frame ([T_mel,B] int32) rather than one-hot rows ([T_mel,B,T_text] float32 plus a
    transpose), which is what made the reference slower on CPU (docs/kernels.md).
    """
    value = lax.stop_gradient(log_likelihood).astype(jnp.float32)
    value = jnp.where(text_mask[:, :, None] & mel_mask[:, None, :], value, 0.0)
    batch, n_text, n_mel = value.shape
    text_len = jnp.sum(text_mask, axis=1, dtype=jnp.int32)
    mel_len = jnp.sum(mel_mask, axis=1, dtype=jnp.int32)

    def forward(q_prev, inputs):
        frame, value_y = inputs
        start = jnp.where(frame == 0, 0.0, -jnp.inf)
        q_advance = jnp.concatenate([jnp.full((batch, 1), start), q_prev[:, :-1]], axis=1)
        return value_y + jnp.maximum(q_prev, q_advance), q_prev < q_advance

    frames = jnp.arange(n_mel)
    q_init = jnp.full((batch, n_text), -jnp.inf, jnp.float32)
    _, advance = lax.scan(forward, q_init, (frames, jnp.moveaxis(value, 2, 0)))

    def backward(token, inputs):
        frame, advance_y = inputs
        came_from_previous = jnp.take_along_axis(advance_y, token[:, None], axis=1)[:, 0]
        move = (frame < mel_len) & (token > 0) & ((token == frame) | came_from_previous)
        return token - move.astype(jnp.int32), token

    _, tokens = lax.scan(backward, text_len - 1, (frames, advance), reverse=True)
    return _path_from_tokens(tokens.T, n_text, mel_mask)


def _alignment_kernel(lengths_ref, value_ref, tokens_ref, advance_ref, column_ref, *, barrier):
    """One utterance. lengths [2] = (tokens, frames); value [T_mel,W] (frame-major, W >= T_text a
    power of two). Writes tokens [T_mel] (frames past the end untouched) and uses advance
    [T_mel,W] int8 and column [2,W+1] float32 as workspace in the output buffers."""
    n_text, n_mel = lengths_ref[0], lengths_ref[1]
    width = value_ref.shape[-1]
    token_ids = lax.broadcasted_iota(jnp.int32, (width,), 0)
    neg_inf = jnp.full((width,), -jnp.inf, jnp.float32)

    # Q[x, y - 1] lives in registers; Q[x - 1, y - 1] is the same column shifted by one token,
    # which Triton cannot do in registers, so the column goes through a global buffer and is
    # read back one element to the left. Two alternating slots make one barrier per frame
    # enough: a slot is rewritten only after every thread has passed the next frame's barrier.
    def forward(frame, q_prev):
        slot = lax.rem(frame, jnp.int32(2))
        column_ref[slot, pl.ds(1, width)] = q_prev
        barrier()
        start = jnp.where(frame == 0, jnp.zeros((width,), jnp.float32), neg_inf)
        q_advance = jnp.where(token_ids == 0, start, column_ref[slot, pl.ds(0, width)])
        value_y = jnp.where(token_ids < n_text, value_ref[frame, :], 0.0)  # padding may be NaN
        advance_ref[frame, :] = (q_prev < q_advance).astype(jnp.int8)
        return value_y + jnp.maximum(q_prev, q_advance)

    lax.fori_loop(0, n_mel, forward, neg_inf)
    barrier()  # the backtrack reads direction bits that other threads wrote

    def backward(step, token):
        frame = n_mel - 1 - step
        tokens_ref[frame] = token
        came_from_previous = advance_ref[frame, token] != 0
        move = (token > 0) & ((token == frame) | came_from_previous)
        return token - move.astype(jnp.int32)

    lax.fori_loop(0, n_mel, backward, n_text - 1)


def pallas_unsupported_reason(*, interpret: bool = False) -> str | None:
    """Why ``pallas_alignment`` cannot run on this backend, or None when it can."""
    if interpret or jax.default_backend() == "gpu":
        return None
    return (
        f"the Pallas MAS kernel is compiled for GPUs only (backend is {jax.default_backend()}); "
        "use impl='xla', or interpret=True to run it through the Pallas interpreter"
    )


@functools.partial(jax.jit, static_argnames=("interpret",))
def pallas_alignment(
    log_likelihood: jax.Array, text_mask: jax.Array, mel_mask: jax.Array, *, interpret: bool = False
) -> jax.Array:
    """Monotonic alignment search as one Pallas launch; same arguments and path as ``reference``.

    Grid over the batch, one program per utterance: a ``fori_loop`` over that utterance's frames
    runs the DP with the value column in registers and writes one direction bit per (frame,
    token); a second loop backtracks over those bits and writes the token of each frame. Lengths
    come from the masks, so each program stops at its own utterance's end. Workspace per
    utterance: T_mel x W int8 direction bits (W = T_text rounded up to a power of two >= 16).
    interpret: run through the Pallas interpreter (any backend; how the CPU tests run it).
    """
    reason = pallas_unsupported_reason(interpret=interpret)
    if reason:
        raise ValueError(reason)
    batch, n_text, n_mel = log_likelihood.shape
    width = max(16, 1 << (n_text - 1).bit_length())  # Triton tensors have power-of-two sizes
    value = jnp.swapaxes(lax.stop_gradient(log_likelihood).astype(jnp.float32), 1, 2)  # one frame = one row
    value = jnp.pad(value, ((0, 0), (0, 0), (0, width - n_text)))
    lengths = jnp.stack([jnp.sum(text_mask, 1, dtype=jnp.int32), jnp.sum(mel_mask, 1, dtype=jnp.int32)], axis=1)
    if interpret:
        barrier, compiler_params = lambda: None, None  # the interpreter runs one thread per program
    else:
        # Imported here: the Triton module is only meaningful when compiling for a GPU.
        from jax.experimental.pallas import triton as pltriton

        barrier = pltriton.debug_barrier
        compiler_params = pltriton.CompilerParams(num_warps=max(1, min(8, width // 128)), num_stages=1)
    per_row = lambda *block: pl.BlockSpec((None, *block), lambda b: (b,) + (0,) * len(block))  # noqa: E731
    tokens, _, _ = pl.pallas_call(
        functools.partial(_alignment_kernel, barrier=barrier),
        grid=(batch,),
        in_specs=[per_row(2), per_row(n_mel, width)],
        out_specs=[per_row(n_mel), per_row(n_mel, width), per_row(2, width + 1)],
        out_shape=[
            jax.ShapeDtypeStruct((batch, n_mel), jnp.int32),
            jax.ShapeDtypeStruct((batch, n_mel, width), jnp.int8),
            jax.ShapeDtypeStruct((batch, 2, width + 1), jnp.float32),
        ],
        compiler_params=compiler_params,
        interpret=interpret,
        name="monotonic_alignment",
    )(lengths, value)
    return _path_from_tokens(tokens, n_text, mel_mask)


def resolve_impl(impl: str = "auto", *, interpret: bool = False) -> str:
    """The implementation ``monotonic_alignment`` runs: "xla" or "pallas".

    "auto" is "pallas" on GPU (one launch instead of 2 x T_mel loop steps) and "xla" elsewhere
    (the Pallas kernel does not lower for TPU, and on CPU it runs only interpreted). An explicit
    "pallas" that cannot run here raises ValueError.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "pallas" if jax.default_backend() == "gpu" else "xla"
    if impl == "pallas":
        reason = pallas_unsupported_reason(interpret=interpret)
        if reason:
            raise ValueError(reason)
    return impl


def _check_prefix_mask(mask: np.ndarray, name: str) -> None:
    if np.any(mask[:, 1:] & ~mask[:, :-1]):
        raise ValueError(f"{name} must be right-padded: valid positions first, then padding")


def monotonic_alignment(
    log_likelihood: jax.Array,
    text_mask: jax.Array,
    mel_mask: jax.Array,
    *,
    impl: str = "auto",
    interpret: bool = False,
) -> jax.Array:
    """Monotonic alignment search, jit-compiled. Shapes and semantics as ``reference``.

    impl: "xla" (``scan_alignment``), "pallas" (``pallas_alignment``) or "auto" (see
    ``resolve_impl``); every choice gives the reference's path exactly. interpret: run the
    Pallas kernel through the interpreter (only with impl="pallas").

    Outside jit the masks are also checked: right-padded, and every utterance needs
    1 <= valid tokens <= valid frames (otherwise no alignment exists). Under an outer jit these
    value checks are skipped and an infeasible row gives an unspecified path.
    """
    chosen = resolve_impl(impl, interpret=interpret)
    chex.assert_rank([log_likelihood, text_mask, mel_mask], [3, 2, 2])
    batch, n_text, n_mel = log_likelihood.shape
    if text_mask.shape != (batch, n_text) or mel_mask.shape != (batch, n_mel):
        raise ValueError(
            f"masks must be [B,T_text] = {(batch, n_text)} and [B,T_mel] = {(batch, n_mel)}, "
            f"got {text_mask.shape} and {mel_mask.shape}"
        )
    try:
        text_np, mel_np = np.asarray(text_mask, bool), np.asarray(mel_mask, bool)
    except jax.errors.TracerArrayConversionError:
        text_np = None  # traced: values are only checkable outside jit
    if text_np is not None:
        _check_prefix_mask(text_np, "text_mask")
        _check_prefix_mask(mel_np, "mel_mask")
        text_len, mel_len = text_np.sum(1), mel_np.sum(1)
        bad = np.nonzero((text_len < 1) | (text_len > mel_len))[0]
        if bad.size:
            raise ValueError(
                "monotonic alignment needs 1 <= tokens <= frames; batch rows "
                f"{bad.tolist()} have tokens {text_len[bad].tolist()} and frames {mel_len[bad].tolist()}"
            )
    text_mask, mel_mask = text_mask.astype(bool), mel_mask.astype(bool)
    if chosen == "pallas":
        return pallas_alignment(log_likelihood, text_mask, mel_mask, interpret=interpret)
    return scan_alignment(log_likelihood, text_mask, mel_mask)


def gaussian_log_likelihood(means: jax.Array, mel: jax.Array) -> jax.Array:
    """log N(mel frame | token mean, I) for every (token, frame) pair, [B,T_text,T_mel].

    means: [B,T_text,F] text-side means; mel: [B,T_mel,F]. Expanded as
    -|y|^2/2 + mu.y - |mu|^2/2 - F/2 log(2 pi) so the cost is one batched matmul (as Matcha).
    Padding is not masked here; ``monotonic_alignment`` ignores it.
    """
    chex.assert_rank([means, mel], 3)
    if means.shape[0] != mel.shape[0] or means.shape[2] != mel.shape[2]:
        raise ValueError(f"means [B,T_text,F] {means.shape} and mel [B,T_mel,F] {mel.shape} disagree on B or F")
    means, mel = means.astype(jnp.float32), mel.astype(jnp.float32)
    cross = jnp.einsum("bxf,byf->bxy", means, mel)
    mel_sq = jnp.sum(jnp.square(mel), axis=-1)[:, None, :]
    means_sq = jnp.sum(jnp.square(means), axis=-1)[:, :, None]
    return cross - 0.5 * (mel_sq + means_sq) - 0.5 * mel.shape[-1] * math.log(2 * math.pi)


def durations_from_path(path: jax.Array) -> jax.Array:
    """Frames per token of an alignment path [B,T_text,T_mel], as [B,T_text] int32."""
    chex.assert_rank(path, 3)
    return jnp.sum(path, axis=-1).astype(jnp.int32)
