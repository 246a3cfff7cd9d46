"""One UniVoice model for both tasks against the single-task models, on the same corpus and machine.

ASR: CER on ``--asr-split`` (default test-unseen: voices never heard in training) of the unified model
and of the CTC recognizer. TTS: the recognizer's CER on speech the unified model clones on
``--tts-split`` (each utterance from another clip of its speaker, prompt audio and text) and, with
``--tts``, on speech of the flow-matching TTS (its own speaker table) on the same split; zero-shot
cloning on the ASR split: speaker similarity with its ceiling and floor, and how often the clone is
nearest to the prompt's voice. Training cost: steps and the time the logged steps took (compilation
excluded). Writes JSON and the docs/benchmarks.md section.

    python experiments/univoice_vs_single_task.py --univoice runs/univoice_tiny --asr runs/asr_ctc_tiny \
        --out experiments/results/univoice_vs_single_task.json
"""

from __future__ import annotations

import argparse
import datetime
import os

from benchmark_docs import command, machine, save_report, write_section

from jaxspeech.train import recipes
from jaxspeech.train.config import read_saved_config
from jaxspeech.train.metrics import read_metrics

TITLE = "## UniVoice: one model for ASR and TTS vs the single-task models"


def training_cost(workdir: str) -> dict:
    """Steps trained and the seconds the logged steps took (sum of log_every / steps_per_second)."""
    config = read_saved_config(workdir)
    logged = [m for m in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "steps_per_second" in m]
    seconds, previous = 0.0, 0
    for m in logged:
        seconds += (m["step"] - previous) / m["steps_per_second"]
        previous = m["step"]
    return {"steps": previous, "step_seconds": round(seconds, 1), "config_steps": config.train.steps}


def _decoding(settings: dict) -> str:
    """``evaluate``'s ``asr_decoding`` in words."""
    search = f"beam {settings['beam_size']}" if settings["beam_size"] else "greedy search"
    return f"{search}, joint with its encoder's CTC at weight {settings['ctc_weight']}" if settings["ctc_weight"] \
        else search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--univoice", required=True, help="a univoice (or flow_omni) workdir")
    parser.add_argument("--asr", required=True, help="the CTC recognizer's workdir (also scores synthesized speech)")
    parser.add_argument("--tts", default=None, help="a tts_fm workdir to compare the synthesized-speech CER with")
    parser.add_argument("--asr-split", default="test-unseen")
    parser.add_argument("--tts-split", default="test-seen")
    parser.add_argument("--limit", type=int, default=None, help="first N utterances of each split")
    parser.add_argument("--beam-size", type=int, default=None, help="the unified model's ASR decoding (default: its "
                        "config's decode section; chosen on valid by experiments/univoice_joint_decoding.py)")
    parser.add_argument("--ctc-weight", type=float, default=None)
    parser.add_argument("--out", default="experiments/results/univoice_vs_single_task.json")
    args = parser.parse_args()

    evaluate = recipes.for_workdir(args.univoice).require("evaluate")
    options = dict(asr_workdir=args.asr, limit=args.limit, beam_size=args.beam_size, ctc_weight=args.ctc_weight)
    unified_asr = evaluate(args.univoice, split=args.asr_split, **options)
    unified_tts = evaluate(args.univoice, split=args.tts_split, **options)
    ctc = recipes.for_workdir(args.asr).require("evaluate")(args.asr, split=args.asr_split, beam_size=0)
    report = {
        "machine": machine(), "command": command(), "date": datetime.date.today().isoformat(),
        "univoice": {"workdir": args.univoice, **training_cost(args.univoice), args.asr_split: unified_asr,
                     args.tts_split: unified_tts},
        "ctc": {"workdir": args.asr, **training_cost(args.asr), args.asr_split: ctc},
    }  # fmt: skip
    rows = [
        f"| ASR CER, {args.asr_split} | {unified_asr['asr_cer']:.2%} | CTC {ctc['cer']:.2%} | "
        f"{unified_asr['asr_cer'] / max(ctc['cer'], 1e-9):.2f} |",
    ]
    if "encoder_ctc_cer" in unified_asr:  # trained with the encoder's CTC: what the encoder hears without the LLM
        rows.append(f"| ASR CER, {args.asr_split}, unified model's audio encoder alone (best-path CTC) | "
                    f"{unified_asr['encoder_ctc_cer']:.2%} | CTC {ctc['cer']:.2%} | "
                    f"{unified_asr['encoder_ctc_cer'] / max(ctc['cer'], 1e-9):.2f} |")  # fmt: skip
    if args.tts:
        tts = recipes.for_workdir(args.tts).require("evaluate")(args.tts, split=args.tts_split, asr_workdir=args.asr,
                                                                limit=args.limit)  # fmt: skip
        report["tts"] = {"workdir": args.tts, **training_cost(args.tts), args.tts_split: tts}
        rows.append(f"| synthesized-speech CER, {args.tts_split} | {unified_tts['tts_asr_cer']:.2%} | "
                    f"flow-matching TTS {tts['asr_cer']:.2%} | "
                    f"{unified_tts['tts_asr_cer'] / max(tts['asr_cer'], 1e-9):.2f} |")  # fmt: skip
    else:
        rows.append(f"| synthesized-speech CER, {args.tts_split} | {unified_tts['tts_asr_cer']:.2%} | "
                    "(no --tts run) | - |")  # fmt: skip
    save_report(report, args.out)
    cloning = unified_asr
    section = f"""{TITLE}

Command: `{report['command']}`  
Machine: {report['machine']}  
Date: {report['date']}

Unified model: `{args.univoice}`, {report['univoice']['steps']} steps ({report['univoice']['step_seconds']:.0f} s of
train steps, compilation excluded); CTC recognizer `{args.asr}`: {report['ctc']['steps']} steps
({report['ctc']['step_seconds']:.0f} s). The unified model transcribes with {_decoding(unified_asr['asr_decoding'])}.
Synthesized speech is scored by that recognizer (greedy); the unified model speaks each utterance cloned from
another clip of its speaker (prompt audio and text).

| figure | unified | single-task | ratio |
| --- | --- | --- | --- |
{chr(10).join(rows)}

Zero-shot cloning on {args.asr_split} ({cloning.get('trials', 0)} trials, Resemblyzer, identification among
{cloning.get('voices', 0)} corpus voices): similarity to the prompt {cloning.get('sim_clone', float('nan')):.3f}
(ceiling: another real utterance {cloning.get('sim_ceiling', float('nan')):.3f}; floor: another voice
{cloning.get('sim_floor', float('nan')):.3f}); clone nearest to the prompt's voice in
{cloning.get('nearest_clone', float('nan')):.1%} of trials (real utterances:
{cloning.get('nearest_ceiling', float('nan')):.1%});
cloned-speech CER {cloning.get('tts_asr_cer', float('nan')):.2%}.
"""
    write_section(TITLE, section)


if __name__ == "__main__":
    main()
