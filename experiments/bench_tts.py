"""Flow-matching TTS benchmark: quality, prosody and speed of a trained workdir at several NFE.

    python experiments/bench_tts.py --tts-workdir runs/tts_fm_tiny --asr-workdir runs/asr_ctc_tiny \
        --out runs/bench_tts.json [--nfe 2 4 8 10 16 32] [--split test-seen] [--train-seconds S]

For every number of Euler steps (NFE; no guidance) it runs ``jaxspeech evaluate`` on the split
(with the config's vocoder, and with Griffin-Lim on the model's own mel):
DTW mel-cepstral distortion against the eSpeak recording, CER of the synthesized audio under the
CTC recognizer of ``--asr-workdir``, comma-pause MAE, terminal contour direction (against the
punctuation and against the recording), and RTF of acoustic model + vocoder on this machine.
The recognizer's CER on the recordings themselves is the reference row. Writes JSON and
replaces this benchmark's section of docs/benchmarks.md. ``--train-seconds`` is the training
run's wall time from its log ("trained to step N in S s"), reported beside the figures.
"""

from __future__ import annotations

import argparse
import datetime
import os

import jax
from benchmark_docs import command, machine, save_report, write_section

from jaxspeech.models.tts.evaluation import MODEL_MEL
from jaxspeech.train import recipes
from jaxspeech.train.config import read_saved_config
from jaxspeech.train.recipes.tts_fm import load_synthesizer

SECTION = "## Flow-matching TTS (issue 3)"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ms(seconds) -> str:
    return "n/a" if seconds is None else f"{1000 * seconds:.0f} ms"


def _vocoder_settings(results: dict) -> str:
    """The harmonic vocoder's Griffin-Lim refinement, in words (empty for other vocoders)."""
    harmonic = results["harmonic"]
    if results["vocoder"] != "harmonic" or not harmonic["griffin_lim_iterations"]:
        return ""
    band = harmonic["below_hz"]
    where = f"above {band:g} Hz" if band > 0 else "over the whole band"
    if band > 0 and harmonic["refine_unvoiced"]:
        where += " in voiced frames, over the whole band in unvoiced ones"
    return f" with {harmonic['griffin_lim_iterations']} Griffin-Lim iterations {where}"


def _model_mel(e: dict) -> str:
    """CER and contour accuracy with Griffin-Lim on the model's own mel, as two table cells."""
    own = e[MODEL_MEL]
    return f" {_pct(own['asr_cer'])} | {_pct(own['contour_accuracy'])} |"


def _section(results: dict, command: str) -> str:
    r = results
    model_mel = MODEL_MEL in r["by_nfe"][0]  # absent when Griffin-Lim on the model's mel is the vocoder
    rows = "\n".join(
        f"| {e['nfe']} | {e['mcd_db']:.2f} | {_pct(e['asr_cer'])} | {e['rtf']:.4f} | "
        f"{_ms(e['comma_pause_mae_s'])} | "
        f"{_pct(e['question_rising'])} / {_pct(e['statement_falling'])} | {_pct(e['contour_accuracy'])} | "
        f"{_pct(e['contour_agreement_with_reference'])} |{_model_mel(e) if model_mel else ''}"
        for e in r["by_nfe"])
    first = r["by_nfe"][0]
    trained = f"{r['train_steps']} steps"
    if r["train_seconds"] is not None:
        trained = f"{r['train_seconds']:.0f} s wall for {trained}"
    return (
        f"{SECTION}\n\nCommand: `{command}`  \nMachine: {r['machine']} (1-min load average {r['load_average'][0]:.1f} "
        f"before, {r['load_average'][1]:.1f} after)  \nDate: {r['date']}\n\n"
        f"Model: {r['parameters'] / 1e6:.2f} M parameters, {r['decoder']} decoder, trained {trained}; "
        f"vocoder {r['vocoder']}{_vocoder_settings(r)}; noise temperature {first['sampler']['temperature']}; "
        f"{first['utterances']} {r['split']} utterances ({first['commas']} commas, "
        f"{first['questions']} questions and {first['statements']} statements). The recognizer's CER on the eSpeak "
        f"recordings themselves: {_pct(r['reference_asr_cer'])}; terminal direction of the recordings against the "
        f"punctuation: {_pct(first['reference_contour_accuracy'])}.\n\n"
        "| NFE | MCD (dB) | ASR CER | RTF | comma pause MAE | questions rising / statements falling | "
        "contour vs punctuation | contour vs recording |"
        + (" Griffin-Lim on the model's mel: ASR CER | contour |" if model_mel else "")
        + "\n| --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if model_mel else "")
        + f"\n{rows}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tts-workdir", required=True)
    parser.add_argument("--asr-workdir", required=True)
    parser.add_argument("--vocoder", default=None, help="griffin-lim or a vocoder workdir (default: the config's)")
    parser.add_argument("--split", default="test-seen")
    parser.add_argument("--nfe", type=int, nargs="+", default=[2, 4, 8, 10, 16, 32])
    parser.add_argument("--temperature", type=float, default=None, help="noise temperature (default: the config's)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--train-seconds", type=float, default=None)
    parser.add_argument("--out", default="runs/bench_tts.json")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()

    evaluate = recipes.get("tts_fm").require("evaluate")
    load_before = os.getloadavg()[0]
    by_nfe = [evaluate(args.tts_workdir, split=args.split, steps=n, guidance=0.0, asr_workdir=args.asr_workdir,
                           vocoder=args.vocoder, temperature=args.temperature, limit=args.limit) for n in args.nfe]
    reference = recipes.for_workdir(args.asr_workdir).require("evaluate")(args.asr_workdir, split=args.split,
                                                                          beam_size=0)
    _, params, step = load_synthesizer(args.tts_workdir, args.vocoder)
    config = read_saved_config(args.tts_workdir)
    results = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "load_average": [load_before, os.getloadavg()[0]],
        "parameters": sum(x.size for x in jax.tree.leaves(params)),
        "decoder": f"{config.model.decoder.network} ({config.model.decoder.objective})",
        "train_steps": step,
        "train_seconds": args.train_seconds,
        "vocoder": by_nfe[0]["vocoder"],
        "harmonic": config.synth.harmonic.to_dict(),
        "split": args.split,
        "reference_asr_cer": reference["cer"],
        "by_nfe": by_nfe,
    }
    save_report(results, args.out)
    if not args.no_docs:
        write_section(SECTION, _section(results, command()))


if __name__ == "__main__":
    main()
