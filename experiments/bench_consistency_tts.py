"""One-step and few-step TTS decoders against their EDM teacher (issue 17): quality and speed of the
teacher at 10 and 50 steps, the CoMoSpeech (CD) student and iCT at 1 and 2 steps, ECT and CTM at 1 and 4.

For every row, ``jaxspeech evaluate`` gives the DTW mel-cepstral distortion to the eSpeak recording (dB),
the CER of the synthesized audio under the CTC recognizer of ``--asr-workdir`` (Griffin-Lim on the
model's mel, the tiny configs' vocoder), and the real-time factor of the acoustic model alone (text to
mel, batch 1, compiled; ``acoustic_rtf``) and with the vocoder (``rtf``), all in one run on one machine.
The speed-up target is then timed side by side: the 50-step teacher and the one-step student take turns on
the same ``--race-utterances`` (acoustic model alone, per-utterance medians of ``--race-repeats`` calls,
``--race-rounds`` rounds), so drifting machine load cannot favour either.

Settings are chosen on ``--select-split`` (valid) before the table split is touched: for each row the
sampler candidates below are scored (CER first, then MCD) and the best is the one reported on
``--split`` (test-seen), once. The CoMoSpeech targets: the one-step student within +0.5 dB MCD and +2
CER points of the 50-step teacher and at least 20 times faster in acoustic RTF.

    python experiments/bench_consistency_tts.py --teacher runs/tts_edm_tiny --cd runs/tts_cd_tiny \
        --ict runs/tts_ict_tiny --ect runs/tts_ect_tiny --ctm runs/tts_ctm_tiny --asr-workdir runs/asr_ctc_tiny

On a GPU machine that has the checkpoints but neither recordings nor recognizer, the table is synthesized and
timed there with the settings an earlier (CPU) run chose, and scored here afterwards:

    python experiments/bench_consistency_tts.py --teacher T --cd C --chosen-from REPORT.json --audio-out DIR
    python experiments/bench_consistency_tts.py --teacher runs/tts_edm_tiny --cd runs/tts_cd_tiny --score-audio DIR
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics

import jax
from benchmark_docs import command, machine, save_report, write_section

from jaxspeech.data.readers import load_records
from jaxspeech.eval.rtf import time_call
from jaxspeech.train import recipes
from jaxspeech.train.config import read_saved_config
from jaxspeech.train.recipes.tts_fm import load_synthesizer, score_audio

SECTION = "## Consistency models for TTS: one-step students vs the EDM teacher (issue 17)"
# model -> steps in the table; and the sampler candidates compared on the selection split.
ROWS = {"teacher": (10, 50), "cd": (1, 2), "ict": (1, 2), "ect": (1, 4), "ctm": (1, 4)}
CANDIDATES = {
    "teacher": [{"temperature": 1.0}, {"temperature": 0.7}],
    "cd": [{"temperature": 1.0}, {"temperature": 0.7}],
    "ict": [{}],
    "ect": [{}],
    "ctm": [{"gamma": 0.0}, {"gamma": 1.0}],
}


def _score(result: dict) -> tuple:
    cer = result["asr_cer"]
    return (float("inf") if cer is None else cer, result["mcd_db"])


def _row(result: dict) -> dict:
    keys = ("mcd_db", "asr_cer", "acoustic_rtf", "rtf", "nfe", "sampler", "step", "utterances")
    return {k: result.get(k) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ROWS:
        parser.add_argument(f"--{name}", default=None, help=f"workdir of the {name} run (a row is left out without)")
    parser.add_argument("--asr-workdir", default="runs/asr_ctc_tiny")
    parser.add_argument("--split", default="test-seen")
    parser.add_argument("--select-split", default="valid")
    parser.add_argument("--select-limit", type=int, default=24, help="utterances of the selection split")
    parser.add_argument("--limit", type=int, default=None, help="utterances of the table split (default: all)")
    parser.add_argument("--race-utterances", type=int, default=12, help="utterances of the side-by-side timing")
    parser.add_argument("--race-rounds", type=int, default=3)
    parser.add_argument("--race-repeats", type=int, default=5, help="timed calls per utterance and round")
    parser.add_argument("--out", default="experiments/results/bench_consistency_tts.json")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--chosen-from", metavar="REPORT", help="take the settings an earlier report chose")
    parser.add_argument("--audio-out", metavar="DIR", help="synthesize and time only: each row's audio to DIR/<row>/ "
                        "and the report to DIR/report.json, for --score-audio (no recordings or recognizer needed)")
    parser.add_argument("--score-audio", metavar="DIR", help="score the rows an --audio-out run left in DIR")
    args = parser.parse_args()
    workdirs = {name: getattr(args, name) for name in ROWS if getattr(args, name)}
    if "teacher" not in workdirs:
        parser.error("--teacher is needed: the students are compared with it")
    if args.audio_out and not args.chosen_from:
        parser.error("--audio-out needs --chosen-from: choosing the settings needs the scores it leaves out")
    if args.score_audio:
        report = _scored(args.score_audio, workdirs, args.asr_workdir)
        save_report(report, args.out)
        if not args.no_docs:
            write_section(_title(report), _markdown(report))
        return
    evaluate = recipes.get("tts_fm").require("evaluate")

    def evaluated(workdir: str, split: str, limit: int | None, sampler: dict) -> dict:
        result = evaluate(workdir, split=split, asr_workdir=args.asr_workdir, limit=limit, sampler=sampler,
                          score=not args.audio_out)
        jax.clear_caches()  # each evaluation compiles its own programs: one process kept them all (LLVM OOM)
        return result

    selection, chosen = {}, {}
    if args.chosen_from:
        with open(args.chosen_from) as f:
            earlier = json.load(f)
        chosen = {name: earlier["chosen"].get(name, CANDIDATES[name][0]) for name in workdirs}
        selection = {"chosen_from": args.chosen_from, "split": earlier["select_split"]}
    for name, workdir in workdirs.items():
        if name in chosen:
            continue
        if len(CANDIDATES[name]) == 1:  # the sampler's defaults: nothing to choose
            chosen[name] = CANDIDATES[name][0]
            continue
        trials = []
        for options in CANDIDATES[name]:
            for steps in ROWS[name]:
                sampler = {**options, "steps": steps}
                result = evaluated(workdir, args.select_split, args.select_limit, sampler)
                trials.append({"options": options, "steps": steps, **_row(result)})
                print(f"[select] {name} {sampler}: CER {result['asr_cer']} MCD {result['mcd_db']:.3f}", flush=True)
        # One choice per model for all its step counts: the lowest CER summed over them, MCD breaking ties.
        best = min(CANDIDATES[name], key=lambda o: tuple(map(sum, zip(*(_score(t) for t in trials
                                                                         if t["options"] == o)))))
        selection[name], chosen[name] = trials, best

    table = {}
    for name, workdir in workdirs.items():
        for steps in ROWS[name]:
            sampler = {**chosen[name], "steps": steps}
            result = evaluated(workdir, args.split, args.limit, sampler)
            objective = read_saved_config(workdir).model.decoder.objective
            table[f"{name} {steps}"] = {"workdir": workdir, "objective": objective, **_row(result)}
            print(f"[{args.split}] {name} {sampler}: {table[f'{name} {steps}']}", flush=True)
            if args.audio_out:
                shutil.copytree(os.path.join(workdir, f"eval_{args.split}"), _audio_dir(args.audio_out, name, steps))
    race = None
    if "cd" in workdirs:
        race = _race({"teacher 50": (workdirs["teacher"], {**chosen["teacher"], "steps": 50}),
                      "cd 1": (workdirs["cd"], {**chosen["cd"], "steps": 1})},
                     args.split, args.race_utterances, args.race_rounds, args.race_repeats)
    report = {"command": command(), "machine": machine(), "date": datetime.date.today().isoformat(),
              "split": args.split, "select_split": args.select_split, "chosen": chosen, "selection": selection,
              "table": table, "race": race, "targets": _targets(table, race)}
    if args.audio_out:  # scored later, elsewhere (--score-audio)
        save_report(report, os.path.join(args.audio_out, "report.json"))
        return
    save_report(report, args.out)
    if not args.no_docs:
        write_section(_title(report), _markdown(report))


def _audio_dir(root: str, name: str, steps: int) -> str:
    return os.path.join(root, f"{name}_{steps}")


def _scored(directory: str, workdirs: dict[str, str], asr_workdir: str) -> dict:
    """The report an ``--audio-out`` run left in ``directory``, its rows scored here (``workdirs``: this
    machine's runs, for their configs and records) with the recognizer of ``asr_workdir``."""
    with open(os.path.join(directory, "report.json")) as f:
        report = json.load(f)
    for row_name, row in report["table"].items():
        name, steps = row_name.split()
        scores = score_audio(workdirs[name], _audio_dir(directory, name, int(steps)), split=report["split"],
                             asr_workdir=asr_workdir)
        row.update(_row({**row, **{k: v for k, v in scores.items() if k != "utterances"}}))
        print(f"[scored] {row_name}: MCD {row['mcd_db']:.3f} CER {row['asr_cer']}", flush=True)
    report["targets"] = _targets(report["table"], report["race"])
    report["scored"] = {"command": command(), "machine": machine(), "date": datetime.date.today().isoformat()}
    return report


def _title(report: dict) -> str:
    """The docs heading: one section per kind of machine the table was synthesized and timed on."""
    return SECTION if ", cpu," in report["machine"] else f"{SECTION[:-1]}, on a GPU)"


def _race(contenders: dict[str, tuple[str, dict]], split: str, utterances: int, rounds: int,
          repeats: int) -> dict:
    """Acoustic-model seconds (batch 1) of each contender (name -> (workdir, sampler options)) on the first
    ``utterances`` of ``split``, the contenders taking turns for ``rounds`` rounds; per round the sum over
    utterances of the median of ``repeats`` calls. Returns the per-round seconds and the speed-up of the last
    contender over the first, per round."""
    loaded = {name: load_synthesizer(workdir) for name, (workdir, _) in contenders.items()}
    some_config = next(iter(loaded.values()))[0].config
    records = load_records(some_config.data.dir, split=split)[:utterances]
    items = {name: [synthesizer.record_item(record) for record in records]
             for name, (synthesizer, _, _) in loaded.items()}
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    key = jax.random.key(0)
    for _ in range(rounds):
        for name, (synthesizer, params, _) in loaded.items():
            seconds[name].append(sum(time_call(synthesizer.generate, params, [item], key=key, warmup=1,
                                               repeats=repeats, **contenders[name][1]) for item in items[name]))
    first, last = list(contenders)
    speedups = [a / b for a, b in zip(seconds[first], seconds[last])]
    print(f"[race] {first} vs {last}: {seconds}, speed-up {speedups}", flush=True)
    return {"utterances": len(records), "rounds": rounds, "repeats": repeats, "seconds": seconds,
            "speedups": speedups, "speedup": statistics.median(speedups)}


def _targets(table: dict, race: dict | None) -> dict:
    teacher, student = table.get("teacher 50"), table.get("cd 1")
    if not (teacher and student) or student["mcd_db"] is None:  # not both there, or not scored yet
        return {}
    def cer(row):
        return None if row["asr_cer"] is None else 100 * row["asr_cer"]

    return {"mcd_gap_db": student["mcd_db"] - teacher["mcd_db"],
            "cer_gap_points": None if cer(student) is None else cer(student) - cer(teacher),
            "acoustic_speedup": teacher["acoustic_rtf"] / student["acoustic_rtf"],
            "acoustic_speedup_side_by_side": race["speedup"] if race else None}


def _markdown(report: dict) -> str:
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    lines = [_title(report), "", f"On {report['split']} (settings chosen on {report['select_split']}: "
             + ", ".join(f"{k} {v}" for k, v in report["chosen"].items()) + "). Griffin-Lim on the model's mel; CER "
             "of the tiny CTC recognizer; RTF at batch 1 (acoustic model alone, and with the vocoder).", "",
             "| model | trained steps | steps (NFE) | MCD (dB) | CER | acoustic RTF | RTF with vocoder |",
             "|---|---|---|---|---|---|---|"]
    for row_name, row in report["table"].items():
        name, steps = row_name.split()
        lines.append(f"| {name} ({row['objective']}) | {row['step']} | {steps} ({row['nfe']}) | {row['mcd_db']:.2f} | "
                     f"{pct(row['asr_cer'])} | {row['acoustic_rtf']:.4f} | {row['rtf']:.3f} |")
    t = report["targets"]
    if t:
        lines += ["", f"CoMoSpeech targets, one-step student vs 50-step teacher: MCD {t['mcd_gap_db']:+.2f} dB "
                  f"(target <= +0.5), CER {t['cer_gap_points']:+.1f} points (target <= +2), acoustic speed-up "
                  f"{t['acoustic_speedup']:.1f}x from the table's RTFs (target >= 20x)."]
    race = report.get("race")
    if race:
        lines += ["", f"Side by side (the two taking turns on the first {race['utterances']} utterances, "
                  f"{race['rounds']} rounds, per-utterance medians of {race['repeats']} calls): acoustic speed-up "
                  f"{race['speedup']:.1f}x (rounds: " + ", ".join(f"{x:.1f}x" for x in race["speedups"]) + ")."]
    lines += ["", f"`{report['command']}` — {report['machine']}, {report['date']}."]
    if "scored" in report:
        scored, selection = report["scored"], report["selection"]
        lines += ["", f"Synthesized and timed on that machine with the settings of {selection['chosen_from']} "
                  f"(chosen on {selection['split']}); the audio scored (MCD, CER) on another: "
                  f"`{scored['command']}` — {scored['machine']}, {scored['date']}."]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
