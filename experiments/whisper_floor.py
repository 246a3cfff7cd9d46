"""Lower bounds on a Whisper decoding call from this machine's measured limits, for benchmarks.

A call encodes B 30 s windows (matrix products: bounded by the machine's float32 matmul rate)
and then runs one decoder step per generated token (each step reads every decoder weight and
each window's cross-attention keys and values from memory, a few MB of arithmetic: bounded by
the memory read bandwidth). ``call_floor_seconds`` adds the two bounds; any implementation in
float32 on this machine needs at least that long, so ``other / floor`` is the largest speed-up
over ``other`` that an implementation could reach here.

Counts use a transformers ``WhisperConfig``-style dict (d_model, encoder_layers, ...).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxspeech.eval.rtf import time_call

F32 = 4  # bytes


def encoder_flops(config: dict, frames: int = 3000) -> float:
    """Multiply-add FLOPs (2 per MAC) of the encoder on one window of ``frames`` mel frames,
    plus every decoder layer's cross-attention key and value projections of its output."""
    d, ffn, mels = config["d_model"], config["encoder_ffn_dim"], config["num_mel_bins"]
    positions = frames // 2
    convs = frames * mels * 3 * d + positions * d * 3 * d
    per_layer = 4 * positions * d * d + 2 * positions * positions * d + 2 * positions * d * ffn
    cross = config["decoder_layers"] * 2 * positions * d * d
    return 2.0 * (convs + config["encoder_layers"] * per_layer + cross)


def step_bytes(config: dict, windows: int, frames: int = 3000) -> float:
    """Bytes one decoding step must read: the decoder's weights used per token (token table,
    self-attention q/k/v/o, cross-attention q/o, feed-forward) once, and the cross-attention
    keys and values of each of ``windows`` windows (beams of a window share them)."""
    d, ffn, layers = config["d_model"], config["decoder_ffn_dim"], config["decoder_layers"]
    weights = config["vocab_size"] * d + layers * (6 * d * d + 2 * d * ffn)
    cross = layers * 2 * (frames // 2) * d
    return F32 * (weights + windows * cross)


def call_floor_seconds(config: dict, windows: int, new_tokens: int, flops_per_s: float, bytes_per_s: float) -> float:
    """Encoder FLOPs at the matmul rate plus ``new_tokens`` steps' reads at the read bandwidth."""
    return windows * encoder_flops(config) / flops_per_s + new_tokens * step_bytes(config, windows) / bytes_per_s


def matmul_flops_per_s(size: int = 2048, repeats: int = 5, torch_threads: int | None = None) -> float:
    """The best float32 rate of a [size, size] @ [size, size] product, XLA's or PyTorch's (with
    ``torch_threads`` intra-op threads, default its current setting)."""
    a = np.random.default_rng(0).standard_normal((size, size), np.float32)
    jax_product, x = jax.jit(lambda m: m @ m), jnp.asarray(a)
    if torch_threads:
        torch.set_num_threads(torch_threads)
    t = torch.from_numpy(a)
    seconds = min(time_call(jax_product, x, repeats=repeats, reduce=min),
                  time_call(lambda: t @ t, repeats=repeats, reduce=min))  # fmt: skip
    return 2.0 * size**3 / seconds


def read_bytes_per_s(megabytes: int = 1024, repeats: int = 5) -> float:
    """The best rate of summing a float32 array of ``megabytes`` (far larger than the caches)."""
    x = jnp.ones(megabytes * 2**20 // F32, jnp.float32)
    total = jax.jit(jnp.sum)
    return megabytes * 2**20 / time_call(total, x, repeats=repeats, reduce=min)
