"""Same config, 1 device vs 8 simulated devices: are the logged losses the same at every step?

    python experiments/device_parity.py --data /tmp/corpus_default [--steps 12] [--out experiments/results/device_parity.json]

Trains ``--config`` (default the tiny CTC recognizer) for ``--steps`` steps twice, in subprocesses:
with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (the mesh's data axis takes all 8) and
with one device, both with ``data.row_multiple=8`` so that the global batch is the config's, and
compares the losses logged at every step. Writes JSON and this benchmark's section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile

from benchmark_docs import command, machine, save_report, write_section

from jaxspeech.train.metrics import read_metrics

SECTION = "## Reproducible at any scale: 1 vs 8 devices (issue 16)"


def train_losses(config: str, data: str, steps: int, devices: int, workdir: str, overrides: list[str]) -> dict:
    """step -> logged loss of a ``jaxspeech train`` run on ``devices`` simulated CPU devices."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"}
    args = [sys.executable, "-m", "jaxspeech.cli", "train", "--config", config, "--workdir", workdir,
            f"--config.data.dir={data}", f"--config.train.steps={steps}", "--config.train.log_every=1",
            "--config.train.eval_every=0", "--config.train.checkpoint_every=0", "--config.data.row_multiple=8",
            *overrides]
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"training on {devices} devices failed:\n{done.stderr[-3000:]}")
    return {m["step"]: m["loss"] for m in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "loss" in m}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="an eSpeak corpus (jaxspeech corpus build)")
    parser.add_argument("--config", default="configs/asr_ctc_tiny.py")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--override", action="append", default=[], help="more --config.* overrides")
    parser.add_argument("--out", default="experiments/results/device_parity.json")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        runs = {n: train_losses(args.config, args.data, args.steps, n, os.path.join(root, str(n)), args.override)
                for n in (1, 8)}
    steps = sorted(runs[1])
    rel = [abs(runs[8][s] - runs[1][s]) / max(abs(runs[1][s]), 1e-12) for s in steps]
    report = {"date": datetime.date.today().isoformat(), "machine": machine(), "config": args.config,
              "steps": steps, "loss_1_device": [runs[1][s] for s in steps],
              "loss_8_devices": [runs[8][s] for s in steps], "max_relative_difference": max(rel)}
    save_report(report, args.out)
    if not args.no_docs:
        rows = "\n".join(f"| {s} | {a:.6f} | {b:.6f} | {r:.1e} |"
                         for s, a, b, r in zip(steps, report["loss_1_device"], report["loss_8_devices"], rel))
        write_section(SECTION, f"{SECTION}\n\nCommand: `{command()}`  \nMachine: {report['machine']}  \n"
                               f"Date: {report['date']}\n\n{args.config} with `data.row_multiple=8`, the loss logged at "
                               f"every step on 1 CPU device and on 8 simulated ones; max relative difference "
                               f"{report['max_relative_difference']:.1e}.\n\n| step | 1 device | 8 devices | relative "
                               f"difference |\n| --- | --- | --- | --- |\n{rows}\n")


if __name__ == "__main__":
    main()
