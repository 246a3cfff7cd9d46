"""Copy synthesis: Griffin-Lim vs a trained iSTFT vocoder, both from the reference log-mels of test-seen.

    python experiments/compare_vocoders.py --data /tmp/corpus_default --vocoder-workdir /tmp/runs/voc \
        --out /tmp/compare_vocoders.json

Per vocoder: MCD against the eSpeak recording and the terminal-contour direction against the
punctuation (``?`` rises, ``.`` falls), next to the recordings' own direction score. This is the
ceiling a TTS model's intonation score can reach through that vocoder. Writes JSON and the
"Vocoder" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time

import jax
import numpy as np

from benchmark_docs import command, machine, save_report, write_section
from jaxspeech.audio import load_audio, log_mel, log_mel_to_audio
from jaxspeech.data.readers import load_records
from jaxspeech.eval import mel_cepstral_distortion
from jaxspeech.eval.prosody import intonation_scores
from jaxspeech.train.metrics import read_metrics
from jaxspeech.train.recipes.vocoder import vocode

TITLE = "## Vocoder copy synthesis (issue 3)"
SAMPLE_RATE = 22050


def compare(data: str, vocoder_workdir: str, limit: int | None, griffin_lim_iterations: int) -> dict:
    records = load_records(data, split="test-seen")[:limit]
    texts = [r["text"] for r in records]
    recordings = [load_audio(os.path.join(data, r["audio"]), sample_rate=SAMPLE_RATE) for r in records]
    mels = [np.asarray(log_mel(a, "tts_22k")) for a in recordings]
    vocoders = {
        f"griffin_lim_{griffin_lim_iterations}": jax.jit(
            lambda m: log_mel_to_audio(m, "tts_22k", n_iter=griffin_lim_iterations)),
        "istft_vocoder": vocode(vocoder_workdir),
    }
    results = {"recordings": intonation_scores(recordings, texts, SAMPLE_RATE)}
    for name, vocoder in vocoders.items():
        start = time.perf_counter()
        audios = [np.asarray(vocoder(m)) for m in mels]
        seconds = time.perf_counter() - start
        results[name] = {
            "mcd_db": float(np.mean([mel_cepstral_distortion(a, r) for a, r in zip(audios, recordings)])),
            "wall_s_including_compilation": seconds,
            **intonation_scores(audios, texts, SAMPLE_RATE),
        }
    steps = max((m["step"] for m in read_metrics(os.path.join(vocoder_workdir, "metrics.jsonl"))), default=0)
    return {"utterances": len(records), "vocoder_workdir": vocoder_workdir, "vocoder_steps": steps,
            "results": results}


def _docs_section(report: dict, command_line: str) -> str:
    rows = ["| audio | MCD dB | contour direction | questions rising | statements falling |",
            "| --- | --- | --- | --- | --- |"]
    for name, r in report["results"].items():
        mcd = f"{r['mcd_db']:.2f}" if "mcd_db" in r else "-"
        rows.append(f"| {name} | {mcd} | {r['contour_accuracy']:.1%} | {r['question_rising']:.1%} | "
                    f"{r['statement_falling']:.1%} |")
    return (f"{TITLE}\n\nMachine: {report['machine']}. Date: {report['date']}.\n\n```bash\n{command_line}\n```\n\n"
            f"{report['utterances']} test-seen utterances; each vocoder renders the recording's own log-mel "
            f"(iSTFT vocoder: `configs/vocoder_istft_tiny.py`, {report['vocoder_steps']} steps). The "
            "contour columns are the ceiling a TTS model's intonation score can reach through that vocoder "
            "(`jaxspeech.eval.prosody.terminal_direction`, ? rising / . falling).\n\n" + "\n".join(rows) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="corpus directory (jaxspeech corpus build)")
    parser.add_argument("--vocoder-workdir", required=True, help="workdir of configs/vocoder_istft_tiny.py")
    parser.add_argument("--limit", type=int, default=None, help="first N test-seen utterances")
    parser.add_argument("--griffin-lim-iterations", type=int, default=32)
    parser.add_argument("--out", required=True, help="JSON report path")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    report = compare(args.data, args.vocoder_workdir, args.limit, args.griffin_lim_iterations)
    report.update(date=datetime.date.today().isoformat(), machine=machine(), load_average=os.getloadavg())
    save_report(report, args.out)
    if not args.no_docs:
        write_section(TITLE, _docs_section(report, command()))


if __name__ == "__main__":
    main()
