"""UniVoice's ASR with joint CTC/attention decoding: the LLM's beam search steered by the encoder's CTC
prefix scores (Watanabe et al. 2017), for a model trained with ``loss.ctc_weight`` > 0.

Every (beam size, CTC weight) of the grid is scored on ``--valid-split``; the best by CER is then run once
on ``--test-split`` beside the LLM alone (greedy, and beam search at the chosen size) and the encoder's CTC
alone (best path). Reports CER, WER and the seconds each decoding took (this machine; batches of
``eval.batch_size``, compilation included in the first batch). Writes JSON and its docs/benchmarks.md section.

    python experiments/univoice_joint_decoding.py --workdir runs/univoice_tiny \
        --out experiments/results/univoice_joint_decoding.json
"""

from __future__ import annotations

import argparse
import datetime
import functools
import time

from benchmark_docs import command, machine, save_report, write_section

from jaxspeech import audio
from jaxspeech.data.readers import load_records
from jaxspeech.eval.error_rate import error_rates
from jaxspeech.train.recipes.univoice import load_speech

TITLE = "## UniVoice: joint CTC/attention decoding"


def score(transcriber, waves: list, references: list[str], batch_size: int) -> dict:
    started = time.time()
    hypotheses = [h for b in range(0, len(waves), batch_size) for h in transcriber(waves[b: b + batch_size])]
    rates = error_rates(references, hypotheses)
    return {"cer": rates["cer"], "wer": rates["wer"], "seconds": round(time.time() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--valid-split", default="valid")
    parser.add_argument("--test-split", default="test-unseen")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.5, 0.7, 1.0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    speech, config, step = load_speech(args.workdir)
    if not config.loss.ctc_weight:
        raise SystemExit(f"{args.workdir} was trained without the encoder's CTC (loss.ctc_weight = 0)")
    batch_size = config.eval.batch_size

    def split(name: str) -> tuple[list, list[str]]:
        records = load_records(config.data.dir, split=name)
        waves = [audio.load_audio(r["audio"], sample_rate=speech.preset.sample_rate) for r in records]
        return waves, [r["text"] for r in records]

    valid = split(args.valid_split)
    grid = []
    for beam in args.beams:
        for weight in args.weights:
            result = score(functools.partial(speech.transcribe, beam_size=beam, ctc_weight=weight), *valid,
                           batch_size)
            grid.append({"beam_size": beam, "ctc_weight": weight, **result})
            print(grid[-1], flush=True)
    chosen = min(grid, key=lambda r: r["cer"])
    beam, weight = chosen["beam_size"], chosen["ctc_weight"]
    test = split(args.test_split)
    report = {
        "workdir": args.workdir, "step": step, "machine": machine(), "command": command(),
        "date": datetime.date.today().isoformat(),
        "valid": {"split": args.valid_split, "utterances": len(valid[0]), "grid": grid},
        "chosen": {"beam_size": beam, "ctc_weight": weight},
        "test": {
            "split": args.test_split, "utterances": len(test[0]),
            "llm_greedy": score(speech.transcribe, *test, batch_size),
            "llm_beam": score(functools.partial(speech.transcribe, beam_size=beam), *test, batch_size),
            "encoder_ctc_best_path": score(speech.transcribe_ctc, *test, batch_size),
            "joint": score(functools.partial(speech.transcribe, beam_size=beam, ctc_weight=weight), *test, batch_size),
        },
    }
    save_report(report, args.out)
    if not args.no_docs:
        write_section(TITLE, section(report))


def section(report: dict) -> str:
    test, chosen = report["test"], report["chosen"]
    rows = "\n".join(f"| {r['beam_size']} | {r['ctc_weight']} | {100 * r['cer']:.1f}% | {r['seconds']} |"
                     for r in report["valid"]["grid"])
    named = [("LLM alone, greedy", "llm_greedy"), (f"LLM alone, beam {chosen['beam_size']}", "llm_beam"),
             ("encoder's CTC alone, best path", "encoder_ctc_best_path"),
             (f"joint, beam {chosen['beam_size']}, CTC weight {chosen['ctc_weight']}", "joint")]
    table = "\n".join(f"| {name} | {100 * test[key]['cer']:.1f}% | {100 * test[key]['wer']:.1f}% | "
                      f"{test[key]['seconds']} |" for name, key in named)
    return f"""{TITLE}

`{report['command']}` ({report['machine']}, {report['date']}; `{report['workdir']}` at step {report['step']}).
The LLM's beam search ranks each beam's 1.5 x beam most probable tokens by (1 - w) x its log-probability +
w x the encoder's CTC prefix-score increment (`samplers.ctc_prefix_score`, `transcribe(ctc_weight=w)`).
Chosen on {report['valid']['split']} ({report['valid']['utterances']} utterances):

| beam | CTC weight w | CER | seconds |
|---|---|---|---|
{rows}

{test['split']} ({test['utterances']} utterances), once:

| decoding | CER | WER | seconds |
|---|---|---|---|
{table}
"""


if __name__ == "__main__":
    main()
