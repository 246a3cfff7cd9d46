"""Monotonic alignment search timings: the plain-JAX reference, the "xla" scan and the Pallas kernel.

    python experiments/bench_mas.py --out runs/bench_mas.json           # CPU, plus GPU when present
    python experiments/bench_mas.py --smoke --out /tmp/bench_mas.json   # tiny, Pallas interpreted, CPU

For every backend present (CPU always, GPU when there is one) and every (B, T_text, T_mel) size,
each implementation runs jitted on inputs already on that device; the result row holds the
median and minimum wall milliseconds over ``repeats`` calls after one warm-up (compile) call,
and whether its path equals the reference's exactly. The Pallas kernel compiles for GPUs only;
on CPU it runs only with --smoke (interpreted, which checks that it runs, not its speed).
Utterances are padded as in training: text lengths in [T_text / 2, T_text], frame lengths in
[max(tokens, 0.6 T_mel), T_mel], the first row full.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxspeech.kernels.monotonic_alignment import pallas_alignment, reference, scan_alignment

SIZES = ((16, 100, 400), (16, 200, 1000), (32, 300, 1600))
SMOKE_SIZES = ((2, 5, 12), (3, 9, 30))
IMPLS = ("reference", "xla", "pallas")


def padded_inputs(rng: np.random.Generator, batch: int, n_text: int, n_mel: int):
    """(log_likelihood [B,T_text,T_mel] float32, text_mask [B,T_text], mel_mask [B,T_mel]) as numpy."""
    value = rng.normal(size=(batch, n_text, n_mel)).astype(np.float32)
    text_len = rng.integers((n_text + 1) // 2, n_text + 1, batch)
    mel_len = np.array([rng.integers(max(t, int(0.6 * n_mel)), n_mel + 1) for t in text_len])
    text_len[0], mel_len[0] = n_text, n_mel
    text_mask = np.arange(n_text)[None] < text_len[:, None]
    mel_mask = np.arange(n_mel)[None] < mel_len[:, None]
    return value, text_mask, mel_mask


def _implementation(impl: str, platform: str, interpret: bool):
    """The jitted function for impl on platform, or a string saying why it does not run there."""
    if impl == "reference":
        return jax.jit(reference)
    if impl == "xla":
        return scan_alignment
    if impl == "pallas":
        if platform != "gpu" and not interpret:
            return "compiled for GPUs only; interpreted timings are not a speed measurement"
        return functools.partial(pallas_alignment, interpret=interpret)
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")


def _time(fn, args, repeats: int) -> tuple[np.ndarray, list[float]]:
    out = np.asarray(jax.block_until_ready(fn(*args)))  # compiles
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(1e3 * (time.perf_counter() - start))
    return out, times


def run_mas_benchmark(
    sizes=SIZES, impls=IMPLS, repeats: int = 7, *, interpret: bool = False, seed: int = 0
) -> list[dict]:
    """Time each impl on each (B, T_text, T_mel) in sizes on every backend present.

    Returns one dict per (backend, size, impl): backend, device, batch, n_text, n_mel, impl,
    median_ms, min_ms, repeats, matches_reference (exact path equality), or skipped (a reason).
    interpret: run the Pallas kernel through the interpreter on every backend (smoke tests).
    """
    platforms = ["cpu"] + (["gpu"] if any(d.platform == "gpu" for d in jax.devices()) else [])
    rng = np.random.default_rng(seed)
    rows = []
    for batch, n_text, n_mel in sizes:
        inputs = padded_inputs(rng, batch, n_text, n_mel)
        for platform in platforms:
            device = jax.devices(platform)[0]
            args = tuple(jax.device_put(jnp.asarray(x), device) for x in inputs)
            expected = None
            for impl in ("reference",) + tuple(i for i in impls if i != "reference"):
                row = dict(backend=platform, device=device.device_kind, batch=batch, n_text=n_text, n_mel=n_mel,
                           impl=impl)
                fn = _implementation(impl, platform, interpret)
                if isinstance(fn, str):
                    rows.append(dict(row, skipped=fn))
                    continue
                with jax.default_device(device):
                    out, times = _time(fn, args, repeats)
                expected = out if impl == "reference" else expected
                if impl in impls:
                    rows.append(dict(row, median_ms=statistics.median(times), min_ms=min(times), repeats=repeats,
                                     matches_reference=bool(np.array_equal(out, expected))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_mas.json")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, Pallas interpreted, CPU")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per case (default 7, smoke 2)")
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    args = parser.parse_args()
    if args.smoke:
        jax.config.update("jax_platforms", "cpu")
    rows = run_mas_benchmark(
        SMOKE_SIZES if args.smoke else SIZES,
        tuple(args.impls),
        args.repeats or (2 if args.smoke else 7),
        interpret=args.smoke,
    )
    for row in rows:
        size = f"{row['backend']:>4} B={row['batch']:<3} T_text={row['n_text']:<4} T_mel={row['n_mel']:<5}"
        timing = row.get("skipped") or (f"{row['median_ms']:9.2f} ms median  {row['min_ms']:9.2f} ms min  "
                                         f"exact={row['matches_reference']}")
        print(f"{size} {row['impl']:>9}: {timing}")
    result = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        jax=jax.__version__,
        devices=sorted({d.device_kind for d in jax.devices()}),
        smoke=args.smoke,
        rows=rows,
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
