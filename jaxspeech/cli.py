"""The ``jaxspeech`` command: quickstart | corpus build | train | evaluate | transcribe | synthesize."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

DEFAULT_DATA_DIR = os.path.join("data", "espeak")


def _corpus_build(args) -> int:
    from jaxspeech.data.corpus import build_corpus

    summary = build_corpus(args.out, size=args.size, seed=args.seed)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def _train(args, overrides) -> int:
    from jaxspeech.train import recipes
    from jaxspeech.train.config import load_config

    config = load_config(args.config, overrides)
    recipes.get(config.recipe).train(config, args.workdir)
    return 0


_VOCODER_HELP = ("griffin-lim, harmonic (harmonic-plus-noise at the predicted F0; models with a pitch predictor) "
                 "or a vocoder workdir (default: the config's)")
_SYNTHESIS_EVAL_OPTIONS = ("asr_workdir", "vocoder", "steps", "guidance", "temperature", "limit")


def _evaluate(args) -> int:
    import inspect

    from jaxspeech.train import recipes

    recipe = recipes.for_workdir(args.workdir)
    options = {name: getattr(args, name) for name in _SYNTHESIS_EVAL_OPTIONS if getattr(args, name) is not None}
    unsupported = sorted(set(options) - set(inspect.signature(recipe.evaluate).parameters))
    if unsupported:
        flags = ", ".join("--" + name.replace("_", "-") for name in unsupported)
        raise SystemExit(f"jaxspeech evaluate: {flags} only apply to a text-to-speech workdir")
    try:
        result = recipe.evaluate(args.workdir, split=args.split, beam_size=args.beam_size, **options)
    except ValueError as err:  # unknown speakers, bad steps/guidance, nothing to evaluate
        raise SystemExit(f"jaxspeech evaluate: {err}") from err
    print(json.dumps(result, sort_keys=True) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


def _transcribe(args) -> int:
    missing = [f for f in args.files if not os.path.isfile(f)]
    if missing:
        raise SystemExit(f"jaxspeech transcribe: no such file(s): {', '.join(missing)}")
    if args.checkpoint is not None:
        from jaxspeech.models.whisper.files import transcribe_files

        try:
            texts = transcribe_files(args.checkpoint, args.files, language=args.language,
                                     beam_size=args.beam_size or None)  # 0 = greedy, as for a workdir
        except (FileNotFoundError, ImportError, ValueError) as err:  # bad checkpoint, tokenizer, language or audio
            raise SystemExit(f"jaxspeech transcribe: {err}") from err
    else:
        if args.language is not None:
            raise SystemExit("jaxspeech transcribe: --language only applies to a Whisper --checkpoint")
        from jaxspeech.train import recipes

        recipe = recipes.for_workdir(args.workdir)
        if not hasattr(recipe, "transcribe"):
            raise SystemExit(f"jaxspeech transcribe: {args.workdir} holds a {recipe.__name__.rsplit('.', 1)[-1]} "
                             "model, which does not transcribe audio")
        texts = recipe.transcribe(args.workdir, args.files, beam_size=args.beam_size)
    for path, text in zip(args.files, texts):
        print(json.dumps({"file": path, "text": text}, ensure_ascii=False) if args.json else text)
    return 0


def _intonation(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(k) for k in value.split(",")]
    except ValueError:
        raise SystemExit(f"jaxspeech synthesize: --intonation takes token indices like 2 or 2,0,5, got {value!r}")


def _synthesize(args) -> int:
    if (args.text is None) == (args.text_file is None):
        raise SystemExit("jaxspeech synthesize: give --text (with --out) or --text-file (with --out-dir)")
    if args.text is not None:
        if not args.out:
            raise SystemExit("jaxspeech synthesize: --text needs --out FILE.wav")
        texts, outs = [args.text], [args.out]
    else:
        if not args.out_dir:
            raise SystemExit("jaxspeech synthesize: --text-file needs --out-dir DIR")
        if not os.path.isfile(args.text_file):
            raise SystemExit(f"jaxspeech synthesize: no such file: {args.text_file}")
        with open(args.text_file, encoding="utf-8") as f:
            texts = [line.strip() for line in f if line.strip()]
        if not texts:
            raise SystemExit(f"jaxspeech synthesize: {args.text_file} has no text")
        os.makedirs(args.out_dir, exist_ok=True)
        outs = [os.path.join(args.out_dir, f"{i:04d}.wav") for i in range(len(texts))]
    from jaxspeech.audio import save_audio
    from jaxspeech.train.recipes.tts_fm import synthesize_texts

    options = {"steps": args.steps, "guidance": args.cfg, "temperature": args.temperature}
    try:
        waveforms, sample_rate = synthesize_texts(
            args.workdir, texts, speaker=args.speaker, intonation=_intonation(args.intonation), vocoder=args.vocoder,
            seed=args.seed, length_scale=args.length_scale, **{k: v for k, v in options.items() if v is not None})
    except ValueError as err:  # empty text, unknown symbols or speaker, absurd steps or guidance
        raise SystemExit(f"jaxspeech synthesize: {err}") from err
    for text, out, waveform in zip(texts, outs, waveforms):
        save_audio(out, waveform, sample_rate)
        print(json.dumps({"text": text, "out": out, "seconds": round(len(waveform) / sample_rate, 3)},
                         ensure_ascii=False))
    return 0


def _bundled_config(name: str) -> str:
    """``configs/NAME`` of the source checkout (editable install) or of the current directory."""
    for root in (os.path.join(os.path.dirname(__file__), os.pardir), os.curdir):
        path = os.path.normpath(os.path.join(root, "configs", name))
        if os.path.isfile(path):
            return path
    raise SystemExit(f"configs/{name} not found: run from a jaxspeech checkout or pass --config")


def _quickstart(args) -> int:
    from jaxspeech.train import recipes
    from jaxspeech.train.config import load_config

    started = time.time()
    if not os.path.isfile(os.path.join(args.data_dir, "corpus.json")):
        from jaxspeech.data.corpus import build_corpus

        print(f"[quickstart] building the eSpeak corpus in {args.data_dir} ...", flush=True)
        build_corpus(args.data_dir, size=args.corpus_size or None, seed=0)
    overrides = [f"--config.data.dir={args.data_dir}"]
    if args.steps:
        overrides.append(f"--config.train.steps={args.steps}")
    config = load_config(args.config or _bundled_config("asr_ctc_tiny.py"), overrides)
    recipe = recipes.get(config.recipe)
    print(f"[quickstart] training {config.recipe} in {args.workdir} ...", flush=True)
    recipe.train(config, args.workdir)
    results = {split: recipe.evaluate(args.workdir, split=split, beam_size=0) for split in ("test-seen", "test-unseen")}
    for split, r in results.items():
        print(f"[quickstart] {split}: CER {100 * r['cer']:.2f}%  WER {100 * r['wer']:.2f}%  ({r['utterances']} utterances)")
    from jaxspeech.data.readers import load_records

    samples = load_records(args.data_dir, split="test-unseen")[:3]
    for record, text in zip(samples, recipe.transcribe(args.workdir, [r["audio"] for r in samples], beam_size=0)):
        print(f"[quickstart] {os.path.basename(record['audio'])}\n    reference:  {record['text']}\n    recognised: {text}")
    print(f"[quickstart] done in {time.time() - started:.0f} s. Corpus: {args.data_dir}; run: {args.workdir} "
          f"(checkpoints/, metrics.jsonl, TensorBoard events, config.json, eval_*.json)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxspeech", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    quick = sub.add_parser("quickstart", help="build the corpus, train the tiny recognizer, evaluate, transcribe")
    quick.add_argument("--workdir", default=os.path.join("runs", "quickstart"))
    quick.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    quick.add_argument("--config", default=None, help="config file (default: configs/asr_ctc_tiny.py)")
    quick.add_argument("--steps", type=int, default=0, help="training steps (default: the config's)")
    quick.add_argument("--corpus-size", type=int, default=0, help="utterances (default: about one hour)")

    corpus = sub.add_parser("corpus", help="the embedded eSpeak NG corpus")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True)
    build = corpus_sub.add_parser("build", help="synthesize the corpus")
    build.add_argument("--out", required=True)
    build.add_argument("--size", type=int, default=None, help="utterances (default: about one hour of audio)")
    build.add_argument("--seed", type=int, default=0)

    train = sub.add_parser("train", help="train from a config; override fields with --config.a.b=value")
    train.add_argument("--config", required=True)
    train.add_argument("--workdir", required=True)

    evaluate = sub.add_parser("evaluate", help="evaluate a trained workdir on a split")
    evaluate.add_argument("--workdir", required=True)
    evaluate.add_argument("--split", default="test-unseen")
    evaluate.add_argument("--beam-size", type=int, default=None, help="0 = greedy (default: the config's)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    tts_eval = evaluate.add_argument_group("text-to-speech workdirs")
    tts_eval.add_argument("--asr-workdir", default=None, help="recognizer for asr_cer (default: the config's)")
    tts_eval.add_argument("--vocoder", default=None, help=_VOCODER_HELP)
    tts_eval.add_argument("--steps", type=int, default=None, help="ODE steps (default: the config's)")
    tts_eval.add_argument("--cfg", dest="guidance", type=float, default=None, help="classifier-free guidance scale")
    tts_eval.add_argument("--temperature", type=float, default=None, help="noise temperature (default: the config's)")
    tts_eval.add_argument("--limit", type=int, default=None, help="evaluate the first N utterances only")

    transcribe = sub.add_parser(
        "transcribe", help="transcribe audio files with a trained workdir or a transformers Whisper checkpoint"
    )
    model = transcribe.add_mutually_exclusive_group(required=True)
    model.add_argument("--workdir", help="a run directory trained by `jaxspeech train`")
    model.add_argument("--checkpoint", help="a transformers Whisper directory (config.json, weights, tokenizer)")
    transcribe.add_argument("--language", default=None, help="Whisper language code, e.g. en (default: detected)")
    transcribe.add_argument("--beam-size", type=int, default=None,
                            help="0 = greedy (default: the config's; Whisper: greedy)")
    transcribe.add_argument("--json", action="store_true", help="print JSON lines")
    transcribe.add_argument("files", nargs="+")

    synth = sub.add_parser("synthesize", help="text to speech with a trained flow-matching TTS workdir")
    synth.add_argument("--workdir", required=True)
    synth.add_argument("--text", help="text to speak (long text is cut at phrase boundaries and joined)")
    synth.add_argument("--out", help="output .wav for --text")
    synth.add_argument("--text-file", help="one text per line")
    synth.add_argument("--out-dir", help="output directory for --text-file (NNNN.wav per line)")
    synth.add_argument("--speaker", default=None, help="speaker name or index (default: the first)")
    synth.add_argument("--steps", type=int, default=None, help="ODE steps (default: the config's)")
    synth.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale (0 = off)")
    synth.add_argument("--temperature", type=float, default=None, help="noise temperature (default: the config's)")
    synth.add_argument("--length-scale", type=float, default=1.0, help="> 1 speaks slower")
    synth.add_argument("--intonation", default=None,
                       help="intonation token for every phrase boundary (K) or one per boundary (K1,K2,...)")
    synth.add_argument("--vocoder", default=None, help=_VOCODER_HELP)
    synth.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    overrides = [a for a in argv if a.startswith("--config.")]
    args = build_parser().parse_args([a for a in argv if not a.startswith("--config.")])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:  # orbax (absl) logs every save step by step; JAX logs its backend probing
        for name in ("absl", "jax._src.xla_bridge"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if overrides and args.command != "train":
        raise SystemExit(f"jaxspeech {args.command}: --config.* overrides only apply to `train`")
    if args.command == "train":
        return _train(args, overrides)
    handlers = {"quickstart": _quickstart, "corpus": _corpus_build, "evaluate": _evaluate, "transcribe": _transcribe,
                "synthesize": _synthesize}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
