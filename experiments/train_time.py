"""Where a tiny config's training time goes: step time and start-up per config variant.

    python experiments/train_time.py --data data/espeak [--config configs/tts_fm_tiny.py] [--steps 150] \
        [--rounds 2] --out experiments/results/tts_train_time.json

Runs ``jaxspeech train`` on ``--config`` (configs/tts_fm_tiny.py or configs/vocoder_gan_tiny.py) for
``--steps`` steps per variant (a set of ``--config.*`` overrides, listed per config in ``VARIANTS``: the
config itself and the parts whose cost is in question), the variants interleaved over ``--rounds`` rounds
so that a slow spell of a shared machine falls on all of them, each run with a cold compilation cache. A
run's step time is the median of the logged ``steps_per_second`` after the first third of the run
(compilation happens at a bucket's first step); start-up is the run's wall time less its steps at that
rate (corpus reading, feature cache, one compilation per bucket, a final checkpoint). Reported: the
median over rounds and the range. Run it on a quiet machine: the figures are times. Writes JSON and the
config's section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmark_docs import command, machine, save_report, write_section

from jaxspeech.train.metrics import read_metrics

SECTIONS = {"configs/tts_fm_tiny.py": "## Time to train the tiny TTS config (issue 16)",
            "configs/vocoder_gan_tiny.py": "## Time to train the tiny GAN vocoder (issue 19)"}
VARIANTS = {
    "configs/tts_fm_tiny.py": {
        "the config": [],
        "pitch predictor off": ["--config.model.pitch.enabled=false"],
        "text encoder 1 transformer layer (of 3)": ["--config.model.encoder.num_layers=1"],
    },
    "configs/vocoder_gan_tiny.py": {
        "the config (MPD at 1/8 width)": [],
        "no discriminator (the generator's reconstruction step alone)": [
            "--config.model.adversarial.discriminators=()"],
        "MPD + MSD at 1/8 width": ["--config.model.adversarial.discriminators=('mpd', 'msd')"],
    },
}


def timed_run(config: str, data: str, steps: int, workdir: str, overrides: list[str]) -> dict:
    """Wall time and logged step rates of one ``jaxspeech train`` run."""
    env = {key: value for key, value in os.environ.items() if key != "JAX_COMPILATION_CACHE_DIR"}
    args = [sys.executable, "-m", "jaxspeech.cli", "train", "--config", config, "--workdir", workdir,
            f"--config.data.dir={data}", f"--config.train.steps={steps}", "--config.train.log_every=5",
            "--config.train.eval_every=0", "--config.train.checkpoint_every=0", *overrides]
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(overrides) or 'the config'} failed:\n{done.stderr[-3000:]}")
    rates = [m["steps_per_second"] for m in read_metrics(os.path.join(workdir, "metrics.jsonl"))
             if "steps_per_second" in m]
    step_s = 1.0 / statistics.median(rates[len(rates) // 3:])  # past every bucket's first (compiling) step
    return {"overrides": overrides, "wall_s": wall, "step_ms": 1000 * step_s, "startup_s": wall - steps * step_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="an eSpeak corpus (jaxspeech corpus build)")
    parser.add_argument("--config", default="configs/tts_fm_tiny.py", choices=sorted(VARIANTS))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", required=True, help="JSON report (experiments/results/<name>_train_time.json)")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    variants = VARIANTS[args.config]
    timings = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as root:
        for round_ in range(args.rounds):
            for i, (name, overrides) in enumerate(variants.items()):
                timings[name].append(timed_run(args.config, args.data, args.steps,
                                               os.path.join(root, f"{round_}_{i}"), overrides))
                print(name, timings[name][-1], flush=True)
    runs = {name: {"overrides": variants[name], "rounds": t,
                   **{f"{key}_{stat.__name__}": stat(r[key] for r in t) for key in ("step_ms", "startup_s")
                      for stat in (statistics.median, min, max)}}
            for name, t in timings.items()}
    report = {"date": datetime.date.today().isoformat(), "machine": machine(), "config": args.config,
              "steps": args.steps, "rounds": args.rounds, "runs": runs}
    save_report(report, args.out)
    if args.no_docs:
        return
    rows = "\n".join(f"| {name} | `{' '.join(r['overrides']) or '-'}` | {r['step_ms_median']:.0f} ms "
                     f"({r['step_ms_min']:.0f}-{r['step_ms_max']:.0f}) | {r['startup_s_median']:.0f} s "
                     f"({r['startup_s_min']:.0f}-{r['startup_s_max']:.0f}) |" for name, r in runs.items())
    section = SECTIONS[args.config]
    write_section(section, f"""{section}

Command: `{command()}`  
Machine: {report['machine']}  
Date: {report['date']}

`jaxspeech train` for {args.steps} steps per variant of {args.config}, cold compilation cache, variants
interleaved over {args.rounds} rounds; median over rounds (range). Step: median of the logged steps/s over the
last two thirds of a run; start-up: the run's wall time less its steps (corpus, feature cache, one compilation
per bucket, final checkpoint).

| variant | overrides | train step | start-up |
| --- | --- | --- | --- |
{rows}
""")


if __name__ == "__main__":
    main()
