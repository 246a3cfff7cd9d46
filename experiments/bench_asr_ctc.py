"""Foundation benchmark: corpus build, tiny CTC recognizer quality and speed, padding.

    python experiments/bench_asr_ctc.py --out runs/bench_asr_ctc

Builds the embedded corpus (timed), trains ``configs/asr_ctc_tiny.py`` (timed, wall clock
including compilation), evaluates CER/WER on test-seen and test-unseen (greedy and beam 8),
and reads steps/s and the padding fractions the run logged. Writes ``OUT/results.json`` and
replaces this benchmark's section of ``docs/benchmarks.md``.
"""

import argparse
import datetime
import json
import os
import subprocess
import time

from benchmark_docs import command, machine, save_report, write_section

from jaxspeech.train import recipes
from jaxspeech.train.config import load_config
from jaxspeech.train.metrics import plot_loss_curve, read_metrics

SECTION = "## Foundation: eSpeak corpus and tiny CTC recognizer"


def _du_megabytes(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files) / 2**20


def _update_docs(results: dict, command: str) -> None:
    r = results
    rows = [
        ("corpus build (default size)", f"{r['corpus']['build_seconds']:.1f} s wall, {r['corpus']['utterances']} utterances, "
                                        f"{r['corpus']['hours']:.2f} h audio, {r['corpus']['megabytes']:.0f} MB"),
        ("training wall time (incl. compilation)", f"{r['train']['wall_seconds']:.0f} s for {r['train']['steps']} steps "
         f"(1-min load average {r['train']['load_average_1min'][0]:.1f} before, {r['train']['load_average_1min'][1]:.1f} after)"),
        ("steady training speed", f"{r['train']['steps_per_second']:.2f} steps/s, "
                                  f"{r['train']['frames_per_second']:.0f} padded frames/s"),
        ("padding: bucketed vs random batching", f"{100 * r['data']['padding_bucketed']:.1f}% vs "
                                                 f"{100 * r['data']['padding_random']:.1f}%"),
    ]
    for split in ("test-seen", "test-unseen"):
        for decoder, e in r["eval"][split].items():
            rows.append((f"{split} {decoder}", f"CER {100 * e['cer']:.2f}%, WER {100 * e['wer']:.2f}% "
                                               f"({e['utterances']} utterances, RTF {e['rtf']:.4f})"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    section = (f"{SECTION}\n\nCommand: `{command}`  \nMachine: {r['machine']}  \nDate: {r['date']}\n\n"
               f"| measure | result |\n| --- | --- |\n{table}\n\nLoss curve: `{r['loss_curve']}` (not committed).\n")
    write_section(SECTION, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_asr_ctc")
    parser.add_argument("--steps", type=int, default=0, help="override the config's steps")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    data_dir, workdir = os.path.join(args.out, "corpus"), os.path.join(args.out, "run")
    if os.path.exists(workdir):
        raise SystemExit(f"{workdir} exists: use a fresh --out so the timing starts from scratch")

    started = time.perf_counter()
    subprocess.run(["jaxspeech", "corpus", "build", "--out", data_dir], check=True, stdout=subprocess.DEVNULL)
    build_seconds = time.perf_counter() - started
    corpus = json.load(open(os.path.join(data_dir, "corpus.json")))

    overrides = [f"--config.data.dir={data_dir}"] + ([f"--config.train.steps={args.steps}"] if args.steps else [])
    config = load_config("configs/asr_ctc_tiny.py", overrides)
    recipe = recipes.get(config.recipe)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    recipe.train(config, workdir)
    train_seconds = time.perf_counter() - started
    load_after = os.getloadavg()[0]  # other work on the machine slows the timed run

    metrics = [m for m in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "steps_per_second" in m]
    steady = metrics[len(metrics) // 2:]  # second half: every bucket compiled, features cached
    steps_per_second = sum(m["steps_per_second"] for m in steady) / len(steady)
    stats = json.load(open(os.path.join(workdir, "data_stats.json")))
    evals = {split: {decoder: recipe.evaluate(workdir, split=split, beam_size=beam)
                     for decoder, beam in (("greedy", 0), ("beam8", 8))}
             for split in ("test-seen", "test-unseen")}
    curve = os.path.join(args.out, "loss_curve.png")
    plot_loss_curve(os.path.join(workdir, "metrics.jsonl"), curve)
    results = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "corpus": {"build_seconds": build_seconds, "utterances": corpus["size"], "hours": corpus["hours"],
                   "megabytes": _du_megabytes(data_dir)},
        "train": {"wall_seconds": train_seconds, "steps": config.train.steps, "steps_per_second": steps_per_second,
                  "frames_per_second": steps_per_second * config.data.max_frames,
                  "load_average_1min": [load_before, load_after]},
        "data": {k: stats[k] for k in ("padding_bucketed", "padding_random", "random_batch_size", "buckets")},
        "eval": evals,
        "loss_curve": curve,
    }
    save_report(results, os.path.join(args.out, "results.json"))
    if not args.no_docs:
        _update_docs(results, command())


if __name__ == "__main__":
    main()
