"""SquareHead sparse fine-tuning of a tiny Whisper-style recognizer (Kurtic et al. 2023's claim, small scale).

    python experiments/sparse_whisper.py --data /tmp/corpus_default --out runs/sparse_whisper

Trains ``configs/whisper_tiny_ft.py`` (0.7M parameters) densely for ``--dense-steps`` (with
``--dense-ctc-weight`` x a CTC loss on the encoder: joint CTC-attention training, which makes the
attention decoder read the audio on a small corpus), then sparse-fine-tunes it for
``--sparse-steps`` to each ``--targets`` sparsity with cross-entropy only and with SquareHead
distillation against the dense model, with no CTC term in either (the cubic schedule reaches the
target at 70% of the steps, the rest recovers). Evaluates greedy
CER/WER of every run on ``--split``, writes ``OUT/results.json`` and ``OUT/cer_vs_sparsity.png``,
and replaces this experiment's section of ``docs/benchmarks.md``. Rerunning with the same
``--out`` resumes finished and interrupted runs from their checkpoints.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmark_docs import command, machine, save_report, write_section
from jaxspeech.train.config import load_config
from jaxspeech.train.metrics import read_metrics
from jaxspeech.train.recipes import whisper_asr

SECTION = "## Sparse Whisper fine-tuning: SquareHead vs cross-entropy"
CONFIG = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "whisper_tiny_ft.py")
QUIET = ["--config.train.log_every=25", "--config.train.eval_every=0"]  # CER is measured once, at the end


def _sparse_overrides(target: float, distill: str, steps: int, dense_workdir: str) -> list[str]:
    return [f"--config.sparsity.target={target}", f"--config.sparsity.distill={distill}",
            f"--config.sparsity.dense_workdir={dense_workdir}", f"--config.sparsity.end_step={int(0.7 * steps)}",
            f"--config.sparsity.frequency={max(1, steps // 20)}", "--config.optim.lr=1e-3",
            f"--config.optim.warmup_steps={max(1, steps // 10)}", "--config.loss.ctc_weight=0.0"]


def _logged_train_seconds(metrics: list[dict]) -> float:
    """Training wall time from the logged step rates (each row covers the steps since the one before),
    so a run that was resumed, or only evaluated on a rerun, keeps the time its steps took."""
    seconds, previous = 0.0, 0
    for row in metrics:
        if row.get("steps_per_second", 0) > 0 and row["step"] > previous:
            seconds += (row["step"] - previous) / row["steps_per_second"]
            previous = row["step"]
    return seconds


def _run(name: str, out: str, data: str, steps: int, split: str, overrides: list[str]) -> dict:
    """Trains (or resumes) ``OUT/name`` and evaluates it; wall times and load averages included."""
    workdir = os.path.join(out, name)
    config = load_config(CONFIG, [f"--config.data.dir={data}", f"--config.train.steps={steps}", *QUIET, *overrides])
    load_before = os.getloadavg()[0]
    whisper_asr.train(config, workdir)
    started = time.perf_counter()
    result = whisper_asr.evaluate(workdir, split=split, beam_size=0)
    metrics = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    losses = [m for m in metrics if "ce" in m]
    print(f"[sparse_whisper] {name}: {json.dumps(result)}", flush=True)
    return {**result, "steps": steps, "train_seconds": _logged_train_seconds(metrics), "final_ce": losses[-1]["ce"],
            "eval_seconds": time.perf_counter() - started,
            "load_average_1min": [load_before, os.getloadavg()[0]], "workdir": workdir}


def _plot(results: dict, targets: list[float], path: str) -> None:
    figure = Figure(figsize=(5.0, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.axhline(100 * results["dense"]["cer"], color="gray", linestyle="--", label="dense")
    for distill in ("ce", "squarehead"):
        cers = [100 * results[f"{distill}_{round(100 * t)}"]["cer"] for t in targets]
        axes.plot([100 * t for t in targets], cers, marker="o", label=f"sparse, {distill}")
    axes.set_xlabel("sparsity of prunable weights (%)")
    axes.set_ylabel("CER (%)")
    axes.legend()
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


def _verdict(runs: dict, targets: list[float]) -> str:
    """One sentence per target: CER of CE-only and SquareHead against dense (absolute points)."""
    dense = 100 * runs["dense"]["cer"]
    lines = []
    for t in targets:
        ce, sq = (100 * runs[f"{d}_{round(100 * t)}"]["cer"] for d in ("ce", "squarehead"))
        lines.append(f"At {100 * t:.0f}% sparsity, cross-entropy alone ends {ce - dense:+.2f} CER points from dense, "
                     f"SquareHead {sq - dense:+.2f}.")
    final_ce = runs["dense"]["final_ce"]
    if dense > 20 and final_ce < 0.05:
        lines.append(f"The dense model memorises its training utterances (final train CE {final_ce:.3f}) but reads "
                     f"test audio badly (CER {dense:.1f}%): it overfits, so this tests the machinery more than "
                     "the paper's claim; a better-regularised dense model (or more data) is needed for that.")
    elif dense > 20:
        lines.append(f"The dense model reads test audio badly (CER {dense:.1f}%, final train CE {final_ce:.3f}: its "
                     "attention decoder leans on the corpus's sentence templates more than on the audio), so this "
                     "tests the machinery more than the paper's claim; a stronger dense model (more steps while the "
                     "train CE still falls, else more data) is needed for that.")
    return " ".join(lines) + " One seed, one corpus: differences of a point or two are within run-to-run noise."


def _update_docs(report: dict, command: str) -> None:
    rows = [f"| {name} | {100 * r.get('sparsity', 0.0):.1f}% | {r['steps']} | {r['final_ce']:.3f} | "
            f"{100 * r['cer']:.2f}% | {100 * r['wer']:.2f}% | {r['train_seconds']:.0f} s |"
            for name, r in report["runs"].items()]
    section = (f"{SECTION}\n\nCommand: `{command}`  \nMachine: {report['machine']}  \nDate: {report['date']}  \n"
               f"Load average (1 min) during this invocation: {report['load_average_range'][0]:.1f} to "
               f"{report['load_average_range'][1]:.1f}  \nTraining time, all runs (from the logged step rates): "
               f"{sum(r['train_seconds'] for r in report['runs'].values()):.0f} s\n\n"
               f"Greedy decoding on {report['split']} ({report['runs']['dense']['utterances']} utterances). Padding of the "
               f"length-bucketed batches: {100 * report['padding']['padding_bucketed']:.1f}% of frames (shuffled "
               f"fixed-size batches: {100 * report['padding']['padding_random']:.1f}%). The dense run adds "
               f"{report.get('dense_ctc_weight', 0.0)} x a CTC loss on the encoder (joint CTC-attention training); "
               "the sparse runs fine-tune with cross-entropy alone or with SquareHead.\n\n"
               "| run | sparsity | steps | final train CE | CER | WER | train wall |\n"
               "| --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) +
               f"\n\n{report['verdict']}\n\nFigure: `{report['figure']}` (not committed).\n")
    write_section(SECTION, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/espeak", help="corpus directory (jaxspeech corpus build)")
    parser.add_argument("--out", default="runs/sparse_whisper")
    parser.add_argument("--dense-steps", type=int, default=6000)
    parser.add_argument("--dense-ctc-weight", type=float, default=0.3)
    parser.add_argument("--sparse-steps", type=int, default=600)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.75])
    parser.add_argument("--split", default="test-seen")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    started = time.perf_counter()
    runs = {"dense": _run("dense", args.out, args.data, args.dense_steps, args.split,
                          [f"--config.loss.ctc_weight={args.dense_ctc_weight}"])}
    dense_workdir = runs["dense"]["workdir"]
    for target in args.targets:
        for distill in ("ce", "squarehead"):
            overrides = _sparse_overrides(target, "none" if distill == "ce" else distill, args.sparse_steps,
                                          dense_workdir)
            name = f"{distill}_{round(100 * target)}"
            runs[name] = _run(name, args.out, args.data, args.sparse_steps, args.split, overrides)
    loads = [x for r in runs.values() for x in r["load_average_1min"]]
    with open(os.path.join(dense_workdir, "data_stats.json")) as f:
        padding = {k: v for k, v in json.load(f).items() if k.startswith("padding")}
    figure = os.path.join(args.out, "cer_vs_sparsity.png")
    _plot(runs, args.targets, figure)
    report = {"runs": runs, "split": args.split, "figure": figure, "wall_seconds": time.perf_counter() - started,
              "load_average_range": [min(loads), max(loads)], "verdict": _verdict(runs, args.targets),
              "padding": padding, "dense_ctc_weight": args.dense_ctc_weight, "date": datetime.date.today().isoformat(),
              "machine": machine()}
    save_report(report, os.path.join(args.out, "results.json"), echo=False)
    if not args.no_docs:
        _update_docs(report, command())
    print(json.dumps({name: {k: r[k] for k in ("cer", "wer")} for name, r in runs.items()}, indent=2))


if __name__ == "__main__":
    main()
