"""Copy synthesis: Griffin-Lim, the harmonic-plus-noise vocoder (alone, refined by Griffin-Lim over the whole
band, and above a crossover only) and trained vocoders, all from the reference log-mels of one split.

    python experiments/compare_vocoders.py --data /tmp/corpus_default --split valid \
        [--vocoder-workdir gan=runs/vocoder_gan_tiny --vocoder-workdir istft=runs/vocoder_istft_tiny] \
        [--asr-workdir runs/asr] --out /tmp/compare_vocoders.json

The harmonic-plus-noise vocoder (``jaxspeech.audio.harmonic``) also gets the recording's pitch
track (``jaxspeech.data.tts.pitch_track``), as a TTS model with a pitch predictor gives it its own.

Per vocoder: MCD against the eSpeak recording, the recognizer's CER, F0 error and voicing agreement
with the recording (where a vocoder loses the pitch), the terminal-contour direction against the
punctuation (``?`` rises, ``.`` falls; next to the recordings' own direction score: the ceiling a TTS
model's intonation score can reach through that vocoder) and the real-time factor of a second pass
over the split (compiled shapes only). The contour is also split by the recording's terminal F0 (the median over
its last 200 ms of voiced frames, YIN): below ``audio.pitch_comb.lowest_resolved_f0`` of tts_22k's 80 filters
(75 Hz: their harmonics unresolved there), up to 100 Hz, and above, whatever ``--preset``. The row
``read_from_mel`` scores the pitch read off the recording's mel itself (``audio.pitch_comb.mel_f0``, no
vocoder). ``--preset`` picks the mel (``tts_22k``; ``tts_22k_128`` has filters fine enough for low voices); MCD
is always taken on tts_22k's.
Writes JSON and the split's (and preset's) "Vocoder copy synthesis" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time

import jax
import numpy as np
from benchmark_docs import command, machine, save_report, write_section

from jaxspeech.audio import get_preset, load_audio, log_mel, log_mel_to_audio, save_audio
from jaxspeech.audio.f0 import estimate_f0
from jaxspeech.audio.harmonic import log_mel_f0_to_audio
from jaxspeech.audio.pitch_comb import lowest_resolved_f0
from jaxspeech.data.readers import load_records
from jaxspeech.data.tts import pitch_track
from jaxspeech.eval import error_rates, f0_agreement, mel_cepstral_distortion
from jaxspeech.eval.prosody import (
    contour_shares,
    expected_direction,
    judged_directions,
    mel_terminal_direction,
    terminal_direction,
)
from jaxspeech.train import recipes
from jaxspeech.train.config import read_saved_config
from jaxspeech.train.metrics import read_metrics
from jaxspeech.train.recipes.vocoder import vocode

SAMPLE_RATE = 22050


def title(split: str, preset: str = "tts_22k") -> str:
    mels = "" if preset == "tts_22k" else f", {preset} mels"
    return f"## Vocoder copy synthesis on {split}{mels} (issues 3, 19)"


def terminal_f0(recording: np.ndarray, preset) -> float:
    """Median YIN F0 (Hz) of the recording's last 200 ms of voiced frames."""
    f0, voiced = (np.asarray(x) for x in estimate_f0(recording, preset, fmin=60.0, fmax=600.0))
    frames = max(2, round(0.2 * preset.sample_rate / preset.hop_length))
    return float(np.median(f0[np.flatnonzero(voiced)[-frames:]])) if voiced.any() else float("nan")


def contour_by_terminal_f0(directions: list[str | None], texts: list[str], f0: list[float],
                           lowest_resolved: float) -> dict[str, dict]:
    """Contour accuracy (and count) of the judged utterances grouped by the recording's terminal F0."""
    groups = {f"below_{lowest_resolved:.0f}_hz": lambda f: f < lowest_resolved,
              f"{lowest_resolved:.0f}_to_100_hz": lambda f: lowest_resolved <= f < 100.0,
              "from_100_hz": lambda f: f >= 100.0}
    out = {}
    for name, inside in groups.items():
        hits = [d == expected_direction(t) for d, t, f in zip(directions, texts, f0)
                if expected_direction(t) and inside(f)]
        out[name] = {"contour_accuracy": float(np.mean(hits)) if hits else float("nan"), "utterances": len(hits)}
    return out


def _trained(workdir: str) -> dict:
    """What a docs row needs to name a trained vocoder: its config's generator, discriminators and steps."""
    config = read_saved_config(workdir)
    steps = max((m["step"] for m in read_metrics(os.path.join(workdir, "metrics.jsonl"))), default=0)
    return {"workdir": workdir, "generator": config.model.generator, "steps": steps,
            "discriminators": list(config.model.adversarial.discriminators)}


def _f0_agreement(audios, recordings) -> dict[str, float]:
    """``eval.f0_agreement`` over the utterances: median of the per-utterance F0 errors, mean of the
    voicing agreements."""
    scores = [f0_agreement(a, r, SAMPLE_RATE) for a, r in zip(audios, recordings)]
    summary = {name: float(np.mean([s[name] for s in scores])) for name in ("voicing_agreement",
                                                                             "tail_voicing_agreement")}
    summary.update({name: float(np.nanmedian([s[name] for s in scores])) for name in ("f0_cents", "tail_f0_cents")})
    return summary


def compare(data: str, split: str, vocoder_workdirs: dict[str, str], limit: int | None, griffin_lim_iterations: int,
            crossover_iterations: int, crossover_hz: float, audio_dir: str, asr_workdir: str | None,
            preset_name: str = "tts_22k") -> dict:
    records = load_records(data, split=split)[:limit]
    texts = [r["text"] for r in records]
    preset = get_preset(preset_name)
    edge = lowest_resolved_f0("tts_22k")  # the same groups whatever the preset, to compare presets
    recordings = [load_audio(os.path.join(data, r["audio"]), sample_rate=SAMPLE_RATE) for r in records]
    mels = [np.asarray(log_mel(a, preset)) for a in recordings]
    tracks = [pitch_track(a, preset) for a in recordings]
    griffin_lim = jax.jit(lambda m: log_mel_to_audio(m, preset, n_iter=griffin_lim_iterations))
    key = jax.random.key(0)

    def harmonic(**refinement):
        return lambda k: log_mel_f0_to_audio(mels[k], np.exp(tracks[k][0]), tracks[k][1], jax.random.fold_in(key, k),
                                             preset, **refinement)

    crossover = dict(griffin_lim_iterations=crossover_iterations, harmonic_below_hz=crossover_hz)
    crossover_name = f"harmonic_plus_noise_gl_{crossover_iterations}_above_{crossover_hz:g}_hz"
    vocoders = {
        f"griffin_lim_{griffin_lim_iterations}": lambda k: griffin_lim(mels[k]),
        "harmonic_plus_noise": harmonic(),
        # Griffin-Lim iterations that start from the harmonic rendering's phase: over the whole band, above
        # the crossover only, and above it in voiced frames only (the tiny TTS config's setting).
        f"harmonic_plus_noise_gl_{griffin_lim_iterations}": harmonic(griffin_lim_iterations=griffin_lim_iterations),
        crossover_name: harmonic(**crossover),
        f"{crossover_name}_voiced_frames": harmonic(**crossover, refine_unvoiced=True),
    }
    for name, workdir in vocoder_workdirs.items():
        vocoders[name] = lambda k, trained=vocode(workdir): trained(mels[k])

    def recognise(paths):
        hypotheses = recipes.for_workdir(asr_workdir).require("transcribe")(asr_workdir, paths, beam_size=0)
        return {"asr_cer": error_rates(texts, hypotheses)["cer"]}

    end_f0 = [terminal_f0(a, preset) for a in recordings]

    def contour(read, signals):
        """Each judged signal's direction read once (nothing voiced: a miss), scored overall and by group."""
        directions = judged_directions(signals, texts, read)
        return {**contour_shares(directions, texts),
                "by_terminal_f0": contour_by_terminal_f0(directions, texts, end_f0, edge)}

    def audio_direction(waveform):
        return terminal_direction(waveform, SAMPLE_RATE)

    def mel_direction(mel):
        return mel_terminal_direction(mel, preset=preset)

    results = {"recordings": contour(audio_direction, recordings), "read_from_mel": contour(mel_direction, mels)}
    if asr_workdir:
        results["recordings"].update(recognise([os.path.join(data, r["audio"]) for r in records]))
    audio_seconds = sum(len(a) for a in recordings) / SAMPLE_RATE
    for name, vocoder in vocoders.items():
        start = time.perf_counter()
        audios = [np.asarray(vocoder(k)) for k in range(len(records))]
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        for k in range(len(records)):  # again, compiled: the real-time factor
            np.asarray(vocoder(k))
        rtf = (time.perf_counter() - start) / audio_seconds
        # One executable per utterance length and vocoder: five vocoders' worth exhausted XLA:CPU's
        # code memory ("LLVM ERROR: Unable to allocate section memory") before the last row.
        jax.clear_caches()
        results[name] = {
            "mcd_db": float(np.mean([mel_cepstral_distortion(a, r) for a, r in zip(audios, recordings)])),
            "wall_s_including_compilation": seconds,
            "rtf": rtf,
            **contour(audio_direction, audios),
            **_f0_agreement(audios, recordings),
        }
        os.makedirs(os.path.join(audio_dir, name), exist_ok=True)
        paths = [os.path.join(audio_dir, name, f"{record['id']}.wav") for record in records]
        for path, waveform in zip(paths, audios):
            save_audio(path, waveform, SAMPLE_RATE)
        if asr_workdir:
            results[name].update(recognise(paths))
    return {"split": split, "preset": preset_name, "lowest_resolved_f0": lowest_resolved_f0(preset),
            "utterances": len(records),
            "audio_seconds": audio_seconds,
            "trained_vocoders": {name: _trained(w) for name, w in vocoder_workdirs.items()},
            "asr_workdir": asr_workdir, "results": results}


def _docs_section(report: dict, command_line: str) -> str:
    rows = ["| audio | MCD dB | ASR CER | contour direction | questions rising | statements falling | "
            "F0 error, cents: all / last 200 ms | voicing agreement: all / last 200 ms | RTF | "
            "contour by the recording's terminal F0 (utterances) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in report["results"].items():
        mcd = f"{r['mcd_db']:.2f}" if "mcd_db" in r else "-"
        cer = f"{r['asr_cer']:.1%}" if "asr_cer" in r else "-"
        rtf = f"{r['rtf']:.4f}" if "rtf" in r else "-"
        f0 = f"{r['f0_cents']:.0f} / {r['tail_f0_cents']:.0f}" if "f0_cents" in r else "-"
        voicing = (f"{r['voicing_agreement']:.1%} / {r['tail_voicing_agreement']:.1%}"
                   if "voicing_agreement" in r else "-")
        groups = "; ".join(f"{group.replace('_', ' ')}: {g['contour_accuracy']:.1%} ({g['utterances']})"
                           for group, g in r.get("by_terminal_f0", {}).items())
        rows.append(f"| {name} | {mcd} | {cer} | {r['contour_accuracy']:.1%} | {r['question_rising']:.1%} | "
                    f"{r['statement_falling']:.1%} | {f0} | {voicing} | {rtf} | {groups or '-'} |")
    trained = "".join(
        f"{name}: generator {v['generator']}, discriminators {', '.join(v['discriminators']) or 'none'}, "
        f"{v['steps']} steps (`{v['workdir']}`); " for name, v in report["trained_vocoders"].items())
    return (f"{title(report['split'], report['preset'])}\n\nMachine: {report['machine']}. Date: {report['date']}.\n\n"
            f"```bash\n{command_line}\n```\n\n"
            f"{report['utterances']} {report['split']} utterances; each vocoder renders the recording's own log-mel "
            f"({trained}harmonic-plus-noise: `jaxspeech.audio.harmonic`, with the recording's pitch track; "
            f"ASR CER: the CTC recognizer of `{report['asr_workdir']}`, greedy). The contour columns are the "
            "ceiling a TTS model's intonation score can reach through that vocoder "
            "(`jaxspeech.eval.prosody.terminal_direction`, ? rising / . falling). F0 error and voicing agreement "
            "against the recording, frame by frame (`jaxspeech.eval.f0_agreement`; median over utterances of the "
            "median error on frames voiced in both, mean agreement), also over the last 200 ms up to the "
            "recording's last voiced frame, where the contour is measured. RTF: seconds per second of "
            "audio on a second, compiled pass. `read_from_mel`: the pitch read off the recording's mel itself "
            "(`jaxspeech.audio.pitch_comb.mel_f0`, no vocoder). Last column: the contour grouped by the "
            "recording's terminal F0 (median YIN F0 of its last 200 ms voiced), below the lowest F0 whose "
            "harmonics tts_22k's 80 filters resolve (`audio.pitch_comb.lowest_resolved_f0`; "
            f"{report['lowest_resolved_f0']:.0f} Hz for the {report['preset']} filters used here), up to 100 Hz, "
            "and above.\n\n" + "\n".join(rows) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="corpus directory (jaxspeech corpus build)")
    parser.add_argument("--split", default="valid", help="valid to choose, test-seen to report")
    parser.add_argument("--vocoder-workdir", action="append", default=[], metavar="NAME=WORKDIR",
                        help="a trained vocoder's workdir and its row name (repeatable)")
    parser.add_argument("--asr-workdir", default=None, help="recognizer workdir: CER of each vocoder's audio")
    parser.add_argument("--audio-dir", default="runs/compare_vocoders", help="where the rendered audio goes")
    parser.add_argument("--limit", type=int, default=None, help="first N utterances of the split")
    parser.add_argument("--griffin-lim-iterations", type=int, default=32)
    parser.add_argument("--crossover-iterations", type=int, default=4, help="refinement above the crossover")
    parser.add_argument("--crossover-hz", type=float, default=2000.0)
    parser.add_argument("--preset", default="tts_22k", help="the mel every vocoder renders (MCD stays tts_22k's)")
    parser.add_argument("--out", required=True, help="JSON report path")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    workdirs = dict(item.split("=", 1) for item in args.vocoder_workdir)
    report = compare(args.data, args.split, workdirs, args.limit, args.griffin_lim_iterations,
                     args.crossover_iterations, args.crossover_hz, args.audio_dir, args.asr_workdir, args.preset)
    report.update(date=datetime.date.today().isoformat(), machine=machine(), load_average=os.getloadavg())
    save_report(report, args.out)
    if not args.no_docs:
        write_section(title(args.split, args.preset), _docs_section(report, command()))


if __name__ == "__main__":
    main()
