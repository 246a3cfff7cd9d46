"""Real-time factor of a (jitted) JAX callable: compute seconds per second of audio."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from time import perf_counter

import jax


def time_call(
    fn: Callable, *args, warmup: int = 1, repeats: int = 5, reduce: Callable = statistics.median, **kwargs
) -> float:
    """Median (or ``reduce``, e.g. ``min`` for a best case) wall-clock seconds of
    ``fn(*args, **kwargs)`` with its outputs ready.

    ``warmup`` untimed calls come first (compilation and caches); each timed call waits on
    ``jax.block_until_ready`` so asynchronous dispatch is not mistaken for speed.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    for _ in range(warmup):
        jax.block_until_ready(fn(*args, **kwargs))
    times = []
    for _ in range(repeats):
        start = perf_counter()
        jax.block_until_ready(fn(*args, **kwargs))
        times.append(perf_counter() - start)
    return reduce(times)


def real_time_factor(
    fn: Callable, *args, audio_seconds: float, warmup: int = 1, repeats: int = 5, **kwargs
) -> float:
    """RTF = median seconds of one ``fn(*args, **kwargs)`` call (:func:`time_call`) divided by
    ``audio_seconds``, the duration of the audio that call produces or consumes."""
    if not audio_seconds > 0:
        raise ValueError(f"audio_seconds must be positive, got {audio_seconds}")
    return time_call(fn, *args, warmup=warmup, repeats=repeats, **kwargs) / audio_seconds


def interleaved_seconds(calls: dict[str, Callable], repeats: int) -> tuple[dict, dict[str, list[float]]]:
    """(output of each zero-argument call's untimed warm-up, its wall seconds in each of ``repeats``
    rounds of one call per entry). Interleaving makes load from other work hit every entry alike,
    so ratios of entries measured in one run compare on a shared machine."""
    outputs = {name: jax.block_until_ready(call()) for name, call in calls.items()}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            times[name].append(time_call(call, warmup=0, repeats=1))
    return outputs, times
