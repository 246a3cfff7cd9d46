"""Kernel benchmarks: flash attention against the XLA reference and cuDNN, and monotonic
alignment search (MAS) against its plain-JAX reference.

    python experiments/bench_kernels.py --out runs/bench_kernels               # GPU: everything, rewrites docs
    python experiments/bench_kernels.py --only mas --out runs/bench_kernels    # CPU only: MAS, rewrites docs
    python experiments/bench_kernels.py --smoke --out /tmp/bench_smoke         # any machine: tiny, interpret mode
    python experiments/bench_kernels.py --render runs/bench_kernels/results.json  # docs from a finished run

Attention: bfloat16, T in {1k, 4k, 16k} with batch x T = 16k tokens and heads x head dim = 2048,
head dim 64 and 128, masks causal / padding / UniVoice dual, forward and forward+backward, for
the XLA reference, the Pallas kernel and cuDNN side by side in one process: median milliseconds,
TFLOP/s counting only the allowed (q, k) pairs (backward = 2.5x forward, the FlashAttention
convention), and the compiled program's scratch memory (XLA memory analysis). A configuration that fails (out of
memory, mask not supported) is recorded with its reason instead of stopping the run.

MAS: for every backend present (CPU always, GPU when there is one) and every (B, T_text, T_mel),
the reference, the "xla" scan and the Pallas kernel run jitted on inputs already on that device,
their calls interleaved round by round (so load from other work hits all alike): median and
minimum milliseconds, and whether the path equals the reference's exactly. The kernel compiles
for GPUs only; on CPU it runs only with --smoke (interpreted, which checks that it runs, not its
speed). Utterances are padded as in training: text lengths in [T_text / 2, T_text], frame lengths
in [max(tokens, 0.6 T_mel), T_mel], the first row full.

Each benchmark in ``BENCHMARKS`` returns its results and a markdown subsection; the script
writes OUT/results.json (after every measurement, so a run cut short keeps what it measured) and
rewrites those subsections of the "## Kernels" section of docs/benchmarks.md (other sections and
subsections are left alone). --smoke writes no docs unless --docs is given. --render rewrites the
docs from a results.json measured elsewhere (a lent GPU machine) without measuring anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmark_docs import command, save_report
from jaxspeech.eval.rtf import interleaved_seconds
from jaxspeech.kernels import flash_attention as flash
from jaxspeech.kernels import monotonic_alignment as mas
from jaxspeech.kernels.attention_mask import MaskSpec, dense_mask
from jaxspeech.nn.attention import attention, resolve_impl

SECTION = "## Kernels"
SECTION_INTRO = ("Written by `experiments/bench_kernels.py`; each subsection names its command, device, "
                 "JAX version and date. Everything that needs a GPU, on a lent GPU, in one command: "
                 "`bash experiments/gpu_checks.sh OUT`, then `python experiments/bench_kernels.py --render "
                 "OUT/results.json`; MAS alone on a CPU: "
                 "`python experiments/bench_kernels.py --only mas --out runs/bench_kernels`.\n")
DOCS = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "benchmarks.md")
IMPLS = ("xla", "pallas", "cudnn")
MASK_KINDS = ("causal", "padding", "dual")
MAS_IMPLS = ("reference", "xla", "pallas")


# --------------------------------------------------------------------------- measurement


def _time_compiled(compiled, args, *, min_seconds: float, max_iters: int) -> float:
    """Median wall milliseconds of ``compiled(*args)`` after one warm-up call."""
    jax.block_until_ready(compiled(*args))
    times: list[float] = []
    while len(times) < 3 or (sum(times) < min_seconds and len(times) < max_iters):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _measure(fn, args, *, min_seconds: float, max_iters: int) -> dict:
    """Compile ``fn`` once; its median time and compiled memory, or the reason it failed."""
    try:
        compiled = jax.jit(fn).lower(*args).compile()
        memory = compiled.memory_analysis()
        ms = _time_compiled(compiled, args, min_seconds=min_seconds, max_iters=max_iters)
    except Exception as error:  # noqa: BLE001 - a failed configuration is a result, not a crash
        text = str(error)
        reason = "out of memory" if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower() else text
        return {"error": reason.splitlines()[0][:300]}
    result = {"ms": ms}
    if memory is not None:
        result["temp_bytes"] = int(memory.temp_size_in_bytes)
        peak = getattr(memory, "peak_memory_in_bytes", 0)
        result["peak_bytes"] = int(peak) if peak else int(
            memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes)
    return result


# --------------------------------------------------------------------------- attention


def attention_mask(kind: str, batch: int, length: int) -> MaskSpec:
    """The benchmark's masks: causal; key padding to 50..100% of T; UniVoice dual (text prefix of
    T/4, bidirectional speech span up to 7T/8, causal rows after it)."""
    if kind == "causal":
        return MaskSpec(causal=True)
    if kind == "padding":
        lengths = np.round(length * (0.5 + 0.5 * (np.arange(batch) + 0.5) / batch)).astype(np.int32)
        return MaskSpec.from_lengths(jnp.asarray(lengths), length)
    if kind == "dual":
        return MaskSpec(causal=True, span_start=jnp.full((batch,), length // 4, jnp.int32),
                        span_end=jnp.full((batch,), length - length // 8, jnp.int32))
    raise ValueError(f"unknown mask kind {kind!r}; known: {MASK_KINDS}")


def _attend(impl: str, mask: MaskSpec, blocks: flash.BlockSizes, interpret: bool):
    if impl == "xla":
        return lambda q, k, v: attention(q, k, v, mask, impl="xla")
    if impl == "pallas":
        return lambda q, k, v: flash.flash_attention(q, k, v, mask, block_sizes=blocks, interpret=interpret)
    return lambda q, k, v: attention(q, k, v, mask, impl="cudnn")


def _forward_backward(attend):
    """(q, k, v, d_out) -> (dq, dk, dv): one forward and one backward pass."""
    return lambda q, k, v, d_out: jax.vjp(attend, q, k, v)[1](d_out)


def _cannot_run(impl: str, q, k, v, mask: MaskSpec, interpret: bool) -> str | None:
    """Why an implementation cannot run this configuration here (checked before compiling)."""
    try:
        resolve_impl(impl, q, k, v, mask, interpret=interpret and impl == "pallas")
    except ValueError as error:
        return str(error)
    return None


def _row_key(row: dict) -> tuple:
    return row["pass"], row["length"], row["head_dim"], row["mask"], row["impl"]


def bench_attention(args, previous: dict | None, save) -> dict:
    """Every (length, head dim, mask, implementation, pass) of the attention sweep.

    Rows of ``previous`` (an earlier run into the same --out with the same blocks and mode) that
    this run does not repeat are kept, so a sweep can be split over several commands by --lengths.
    ``save`` receives the result so far after every row.
    """
    interpret = jax.default_backend() != "gpu"
    blocks = flash.BlockSizes(*args.blocks, num_warps=args.warps, num_stages=args.stages)
    tiles = [*args.blocks, args.warps, args.stages]
    compatible = previous and previous.get("blocks") == tiles and previous.get("interpret") == interpret
    rows = []

    def so_far():
        measured = {_row_key(r) for r in rows}
        kept = [r for r in previous["rows"] if _row_key(r) not in measured] if compatible else []
        return {"interpret": interpret, "blocks": tiles, "rows": kept + rows}

    for length in args.lengths:
        batch = max(1, args.tokens // length)
        for head_dim in args.head_dims:
            heads = max(1, args.width // head_dim)
            rng = np.random.default_rng(0)
            q, k, v, d_out = (jnp.asarray(rng.standard_normal((batch, length, heads, head_dim)), jnp.bfloat16)
                              for _ in range(4))
            for kind in args.masks:
                mask = attention_mask(kind, batch, length)
                # batch x T x T <= 16k x 16k fits int32.
                allowed = int(dense_mask(mask, batch, length, length).sum(dtype=jnp.int32))
                forward_flops = 4.0 * heads * head_dim * allowed
                for impl in args.impls:
                    reason = _cannot_run(impl, q, k, v, mask, interpret)
                    attend = _attend(impl, mask, blocks, interpret)
                    for name, fn, fn_args, flops in (
                        ("forward", attend, (q, k, v), forward_flops),
                        ("forward+backward", _forward_backward(attend), (q, k, v, d_out), 3.5 * forward_flops),
                    ):
                        result = {"error": reason} if reason else _measure(
                            fn, fn_args, min_seconds=args.min_seconds, max_iters=args.max_iters)
                        if "ms" in result:
                            result["tflops"] = flops / (result["ms"] * 1e-3) / 1e12
                        rows.append({"pass": name, "length": length, "head_dim": head_dim, "batch": batch,
                                     "heads": heads, "mask": kind, "impl": impl, "allowed_pairs": allowed,
                                     **result})
                        print(json.dumps(rows[-1]), flush=True)
                        save(so_far())
    return so_far()


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    if "error" in row:
        return "OOM" if row["error"] == "out of memory" else "n/a"
    return f"{row['ms']:.3g} ({row['tflops']:.3g})"


def _mib(row: dict | None) -> str:
    return f"{row['temp_bytes'] / 2**20:.4g}" if row and "temp_bytes" in row else "-"


def attention_markdown(result: dict, header: str) -> str:
    rows = result["rows"]
    index = {(r["pass"], r["length"], r["head_dim"], r["mask"], r["impl"]): r for r in rows}
    lines = [
        "### Flash attention", "", header, "",
        f"Pallas tiles (fwd q, fwd k, bwd q, bwd k, warps, stages; None: by head dim): {result['blocks']}"
        + (" — **interpret mode** (no GPU): times say nothing about kernel speed." if result["interpret"] else ""),
        "", "Cells: median ms (TFLOP/s over allowed pairs only). Temp: the compiled program's scratch memory "
        "beyond its inputs and outputs (MiB; `peak_bytes` in the JSON is XLA's own peak estimate).",
        "",
        "| pass | T | D | mask | XLA | Pallas | cuDNN | Pallas / cuDNN | Pallas / XLA | temp MiB XLA / Pallas / cuDNN |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    keys = sorted({k[:4] for k in index}, key=lambda k: (k[0] != "forward", k[1], k[2], MASK_KINDS.index(k[3])))
    for key in keys:
        xla, pallas, cudnn = (index.get((*key, impl)) for impl in IMPLS)

        def ratio(a, b):
            return f"{b['ms'] / a['ms']:.2f}x" if a and b and "ms" in a and "ms" in b else "-"

        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {_cell(xla)} | {_cell(pallas)} | {_cell(cudnn)} "
                     f"| {ratio(pallas, cudnn)} | {ratio(pallas, xla)} "
                     f"| {_mib(xla)} / {_mib(pallas)} / {_mib(cudnn)} |")
    errors = sorted({r["error"] for r in rows if "error" in r and r["error"] != "out of memory"})
    if errors:
        lines += ["", "Not run (n/a):"] + [f"- {e}" for e in errors]
    lines += ["", "Ratios are speed-ups of Pallas (> 1: Pallas faster). Targets (H100): Pallas >= 0.8x cuDNN "
              "on causal and padding; >= 2x XLA on dual at T = 4096; Pallas memory linear in T."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- monotonic alignment search


def padded_alignment_inputs(rng: np.random.Generator, batch: int, n_text: int, n_mel: int):
    """(log_likelihood [B,T_text,T_mel] float32, text_mask [B,T_text], mel_mask [B,T_mel]) as numpy."""
    value = rng.normal(size=(batch, n_text, n_mel)).astype(np.float32)
    text_len = rng.integers((n_text + 1) // 2, n_text + 1, batch)
    mel_len = np.array([rng.integers(max(t, int(0.6 * n_mel)), n_mel + 1) for t in text_len])
    text_len[0], mel_len[0] = n_text, n_mel
    text_mask = np.arange(n_text)[None] < text_len[:, None]
    mel_mask = np.arange(n_mel)[None] < mel_len[:, None]
    return value, text_mask, mel_mask


def _alignment_fn(impl: str, platform: str, interpret: bool):
    """The jitted MAS implementation for ``platform``, or a string saying why it does not run there."""
    if impl == "reference":
        return jax.jit(mas.reference)
    if impl == "xla":
        return mas.scan_alignment
    if platform != "gpu" and not interpret:
        return "compiled for GPUs only; interpreted timings are not a speed measurement"
    return functools.partial(mas.pallas_alignment, interpret=interpret)


def _failure(call) -> str | None:
    """Why one call of ``call`` fails (compile or run), or None when it runs."""
    try:
        jax.block_until_ready(call())
    except Exception as error:  # noqa: BLE001 - a kernel that fails on a device is a result, not a crash
        return "failed: " + str(error).splitlines()[0][:300]
    return None


def bench_mas(args, previous: dict | None, save) -> dict:
    """Every (backend, size, implementation) of the MAS sweep; one row each with median_ms, min_ms,
    repeats and matches_reference (exact path equality), or skipped (why: not run there, or failed).
    ``previous`` is not merged: the whole sweep takes minutes at most, so every run measures it all.
    ``save`` receives the result so far after every size."""
    interpret = args.smoke
    platforms = ["cpu"] + (["gpu"] if jax.default_backend() == "gpu" else [])
    rng = np.random.default_rng(0)
    rows = []
    for batch, n_text, n_mel in args.mas_sizes:
        inputs = padded_alignment_inputs(rng, batch, n_text, n_mel)
        for backend in platforms:
            device = jax.devices(backend)[0]
            on_device = tuple(jax.device_put(jnp.asarray(x), device) for x in inputs)
            fns = {impl: _alignment_fn(impl, backend, interpret) for impl in MAS_IMPLS}
            fns = {impl: fn if isinstance(fn, str) else _failure(functools.partial(fn, *on_device)) or fn
                   for impl, fn in fns.items()}  # fmt: skip
            calls = {impl: functools.partial(fn, *on_device) for impl, fn in fns.items() if not isinstance(fn, str)}
            outputs, seconds = interleaved_seconds(calls, args.mas_repeats)
            expected = np.asarray(outputs["reference"])
            for impl, fn in fns.items():
                row = {"backend": backend, "device": device.device_kind, "batch": batch, "n_text": n_text,
                       "n_mel": n_mel, "impl": impl}  # fmt: skip
                if isinstance(fn, str):
                    rows.append({**row, "skipped": fn})
                    continue
                ms = [1e3 * t for t in seconds[impl]]
                rows.append({**row, "median_ms": statistics.median(ms), "min_ms": min(ms), "repeats": len(ms),
                             "matches_reference": bool(np.array_equal(np.asarray(outputs[impl]), expected))})
                print(json.dumps(rows[-1]), flush=True)
            save({"interpret": interpret, "rows": rows})
    return {"interpret": interpret, "rows": rows}


def mas_markdown(result: dict, header: str) -> str:
    """The "### Monotonic alignment search" subsection: one row per (backend, size)."""
    index = {(r["backend"], r["batch"], r["n_text"], r["n_mel"], r["impl"]): r for r in result["rows"]}
    lines = [
        "### Monotonic alignment search", "", header, "",
        "Cells: median (min) ms over the interleaved calls; speed-ups over the reference; exact: every "
        "path equals the reference's." + (" **Smoke run, Pallas interpreted**: times say nothing about "
                                           "kernel speed." if result["interpret"] else ""), "",
        "| backend | B, T_text, T_mel | reference | `\"xla\"` | Pallas | xla speed-up | Pallas speed-up | exact |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for key in sorted({k[:4] for k in index}):
        cells = {impl: index.get((*key, impl)) for impl in MAS_IMPLS}
        timed = {impl: row for impl, row in cells.items() if row and "median_ms" in row}

        def speedup(impl):
            return f"{timed['reference']['median_ms'] / timed[impl]['median_ms']:.2f}x" if impl in timed else "-"

        times = [f"{timed[i]['median_ms']:.3g} ({timed[i]['min_ms']:.3g})" if i in timed else "n/a" for i in MAS_IMPLS]
        exact = all(row["matches_reference"] for row in timed.values())
        lines.append(f"| {key[0]} ({cells['reference']['device']}) | {key[1]}, {key[2]}, {key[3]} | "
                     + " | ".join(times) + f" | {speedup('xla')} | {speedup('pallas')} | {'yes' if exact else 'NO'} |")
    skipped = sorted({f"{r['backend']} {r['impl']}: {r['skipped']}" for r in result["rows"] if "skipped" in r})
    if skipped:
        lines += ["", "Not run (n/a):"] + [f"- {reason}" for reason in skipped]
    return "\n".join(lines) + "\n"


BENCHMARKS = {"attention": (bench_attention, attention_markdown), "mas": (bench_mas, mas_markdown)}


# --------------------------------------------------------------------------- docs


def _heading_level(line: str) -> int:
    match = re.match(r"(#{1,6}) ", line)
    return len(match.group(1)) if match else 0


def _section_bounds(lines: list[str], heading: str, start: int = 0, stop: int | None = None) -> tuple[int, int] | None:
    """[first, end) line indices of the section that opens with ``heading`` (fenced code aware)."""
    stop = len(lines) if stop is None else stop
    level, first, fenced = _heading_level(heading), None, False
    for i in range(start, stop):
        if lines[i].startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        if first is None and lines[i].rstrip() == heading:
            first = i
        elif first is not None and 0 < _heading_level(lines[i]) <= level:
            return first, i
    return (first, stop) if first is not None else None


def update_docs(path: str, subsections: dict[str, str]) -> None:
    """Replace (or append) each "### ..." subsection inside "## Kernels" of ``path``."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    lines = text.rstrip("\n").split("\n")
    if _section_bounds(lines, SECTION) is None:
        lines += ["", SECTION, "", *SECTION_INTRO.rstrip("\n").split("\n")]
    for body in subsections.values():
        heading = body.split("\n", 1)[0]
        first, end = _section_bounds(lines, SECTION)
        new = body.rstrip("\n").split("\n")
        inner = _section_bounds(lines, heading, first + 1, end)
        if inner is None:
            lines[end:end] = ([""] if lines[end - 1].strip() else []) + new + ([""] if end < len(lines) else [])
        else:
            lines[inner[0]:inner[1]] = new + ([""] if inner[1] < len(lines) else [])
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- main


def _device() -> str:
    device = jax.devices()[0]
    return (f"{device.device_kind} ({device.platform}), {platform.machine()} with {os.cpu_count()} CPU cores, "
            f"jax {jax.__version__}")


def render_docs(results: dict, docs: str) -> None:
    """Rewrite the docs subsections of every benchmark in ``results`` (each with its own header)."""
    markdown = {name: render(results[name], results["headers"][name])
                for name, (_, render) in BENCHMARKS.items() if name in results}
    for body in markdown.values():
        print(body)
    update_docs(docs, markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_kernels")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, Pallas in interpret mode (runs on CPU)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=sorted(BENCHMARKS))
    parser.add_argument("--docs", default=None, help="markdown file to update (default docs/benchmarks.md; "
                                                     "none with --smoke)")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--render", metavar="RESULTS_JSON", help="only rewrite the docs from this results.json")
    parser.add_argument("--lengths", type=int, nargs="+", help="attention T values (default 1024 4096 16384)")
    parser.add_argument("--head-dims", type=int, nargs="+", help="attention head dims (default 64 128)")
    parser.add_argument("--blocks", type=int, nargs=4, help="Pallas block sizes: fwd q, fwd k, bwd q, bwd k")
    parser.add_argument("--warps", type=int, default=flash.BlockSizes.num_warps, help="Pallas warps per program")
    parser.add_argument("--stages", type=int, help="Pallas pipelining stages (default: by head dim)")
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS), help="attention implementations")
    parser.add_argument("--masks", nargs="+", choices=MASK_KINDS, default=list(MASK_KINDS), help="attention masks")
    parser.add_argument("--min-seconds", type=float, help="timed seconds per attention configuration "
                                                          "(at least 3 calls; default 1, smoke 0)")
    parser.add_argument("--mas-repeats", type=int, help="timed MAS calls per implementation (default 7, smoke 2)")
    args = parser.parse_args()
    if args.render:
        render_docs(json.load(open(args.render)), args.docs or DOCS)
        return
    smoke = args.smoke
    args.lengths = args.lengths or ([40, 64] if smoke else [1024, 4096, 16384])
    args.head_dims = args.head_dims or ([32] if smoke else [64, 128])
    args.blocks = args.blocks or ([16, 16, 16, 16] if smoke else list(dataclasses.astuple(flash.BlockSizes())[:4]))
    args.tokens = 96 if smoke else 16384
    args.width = 64 if smoke else 2048
    args.min_seconds = args.min_seconds if args.min_seconds is not None else (0.0 if smoke else 1.0)
    args.max_iters = 3 if smoke else 100
    args.mas_sizes = ((2, 5, 12), (3, 9, 30)) if smoke else ((16, 100, 400), (16, 200, 1000), (32, 300, 1600))
    args.mas_repeats = args.mas_repeats or (2 if smoke else 7)
    if not smoke and "attention" in args.only and jax.default_backend() != "gpu":
        raise SystemExit(f"the attention sweep needs a GPU (backend is {jax.default_backend()}); "
                         "use --only mas or --smoke here")

    command_line = command()
    date = datetime.date.today().isoformat()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    header = f"Command: `{command_line}`  \nDevice: {_device()}  \nDate: {date}"
    header += f"; load average (1, 5, 15 min) at start: {load}"
    results_path = os.path.join(args.out, "results.json")
    previous = json.load(open(results_path)) if os.path.exists(results_path) else {}
    results = {**previous, "date": date, "device": _device(), "command": command_line, "smoke": smoke}
    results["headers"] = {**previous.get("headers", {}), **{name: header for name in args.only}}

    def saver(name):
        def save(partial):
            results[name] = partial
            save_report(results, results_path, echo=False)
        return save

    for name in args.only:
        run, _ = BENCHMARKS[name]
        saver(name)(run(args, previous.get(name), saver(name)))
    docs = args.docs or (None if smoke else DOCS)
    if docs and not args.no_docs:
        render_docs(results, docs)


if __name__ == "__main__":
    main()
