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

    summary = build_corpus(args.out, size=args.size, seed=args.seed, voices=args.voices)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def _train(args, overrides) -> int:
    from jaxspeech.train import recipes
    from jaxspeech.train.config import ConfigError, load_config

    try:
        config = load_config(args.config, overrides)
    except ConfigError as err:
        raise SystemExit(f"jaxspeech train: {err}") from err
    recipes.get(config.recipe).train(config, args.workdir)
    return 0


def _print(result: dict, as_json: bool) -> None:
    print(json.dumps(result, sort_keys=True) if as_json else "\n".join(f"{k}: {v}" for k, v in result.items()))


def _recipe_call(command: str, args, *call_args, **call_kwargs):
    """The workdir recipe's ``command`` capability called with the recipe options the user gave;
    a workdir without a recipe, a capability it does not offer or bad input ends in one line."""
    from jaxspeech.train import recipes

    options = {name: getattr(args, name) for name in args.recipe_options if getattr(args, name) is not None}
    try:
        recipe = args.recipe or recipes.for_workdir(args.workdir)
        return recipe.require(command)(args.workdir, *call_args, **call_kwargs, **options)
    except ValueError as err:  # no such recipe or capability, unknown speakers or symbols, bad settings
        raise SystemExit(f"jaxspeech {command}: {err}") from err


def _evaluate(args) -> int:
    result = _recipe_call("evaluate", args, split=args.split)
    _print(result, args.json)
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
        if getattr(args, "language", None) is not None:
            raise SystemExit("jaxspeech transcribe: --language only applies to a Whisper --checkpoint")
        texts = _recipe_call("transcribe", args, args.files)
    for path, text in zip(args.files, texts):
        print(json.dumps({"file": path, "text": text}, ensure_ascii=False) if args.json else text)
    return 0


def _synthesize(args) -> int:
    if args.checkpoint is not None:
        if not os.path.isfile(args.checkpoint):
            raise SystemExit(f"jaxspeech synthesize: no such checkpoint file: {args.checkpoint}")
        args.workdir = args.checkpoint  # the TTS recipe reads a Matcha-TTS checkpoint in place of a workdir
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

    waveforms, sample_rate = _recipe_call("synthesize", args, texts)
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
    evaluate, transcribe = recipe.require("evaluate"), recipe.require("transcribe")
    print(f"[quickstart] training {config.recipe} in {args.workdir} ...", flush=True)
    recipe.train(config, args.workdir)
    results = {split: evaluate(args.workdir, split=split, beam_size=0) for split in ("test-seen", "test-unseen")}
    for split, r in results.items():
        print(f"[quickstart] {split}: CER {100 * r['cer']:.2f}%  WER {100 * r['wer']:.2f}%  ({r['utterances']} utterances)")
    from jaxspeech.data.readers import load_records

    samples = load_records(args.data_dir, split="test-unseen")[:3]
    for record, text in zip(samples, transcribe(args.workdir, [r["audio"] for r in samples], beam_size=0)):
        print(f"[quickstart] {os.path.basename(record['audio'])}\n    reference:  {record['text']}\n    recognised: {text}")
    print(f"[quickstart] done in {time.time() - started:.0f} s. Corpus: {args.data_dir}; run: {args.workdir} "
          f"(checkpoints/, metrics.jsonl, TensorBoard events, config.json, eval_*.json)")
    return 0


_RECIPE_COMMANDS = ("evaluate", "transcribe", "synthesize")  # their options come from the workdir's recipe


def _workdir_recipe(argv: list[str], command: str):
    """The recipe of the ``--workdir`` on the command line (for ``synthesize --checkpoint``: the TTS
    recipe, which reads Matcha-TTS checkpoints), None without one (or without a config)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--workdir")
    pre.add_argument("--checkpoint")
    known = pre.parse_known_args(argv)[0]
    workdir = known.workdir
    if command == "synthesize" and known.checkpoint:
        from jaxspeech.train import recipes

        return recipes.get("tts_fm")
    if workdir is None or not os.path.isfile(os.path.join(workdir, "config.json")):
        return None
    from jaxspeech.train import recipes

    try:
        return recipes.for_workdir(workdir)
    except recipes.RecipeError as err:
        raise SystemExit(f"jaxspeech: {workdir}: {err}") from err


def _add_recipe_options(sub: argparse.ArgumentParser, capability: str, recipe) -> None:
    """The workdir recipe's own options for ``capability``, remembered by dest in ``recipe_options``."""
    before = {action.dest for action in sub._actions}
    if recipe is not None:
        recipe.add_arguments(capability, sub.add_argument_group(f"{recipe.name} options"))
    sub.set_defaults(recipe=recipe, recipe_options=sorted({a.dest for a in sub._actions} - before))


def build_parser(recipe=None) -> argparse.ArgumentParser:
    """The command line; ``recipe`` (the ``--workdir``'s) adds its own evaluate, transcribe and
    synthesize options."""
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
    build.add_argument("--voices", choices=("default", "many"), default="default",
                       help="default: 12 training voices, 3 held out; many: every eSpeak NG voice variant with two "
                            "English accents, whole variants held out (zero-shot voice cloning)")

    train = sub.add_parser("train", help="train from a config; override fields with --config.a.b=value")
    train.add_argument("--config", required=True)
    train.add_argument("--workdir", required=True)

    evaluate = sub.add_parser("evaluate", help="evaluate a trained workdir on a split (options: its recipe's)")
    evaluate.add_argument("--workdir", required=True)
    evaluate.add_argument("--split", default="test-unseen")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    _add_recipe_options(evaluate, "evaluate", recipe)

    transcribe = sub.add_parser(
        "transcribe", help="transcribe audio files with a trained workdir or a transformers Whisper checkpoint"
    )
    model = transcribe.add_mutually_exclusive_group(required=True)
    model.add_argument("--workdir", help="a run directory trained by `jaxspeech train`")
    model.add_argument("--checkpoint", help="a transformers Whisper directory (config.json, weights, tokenizer)")
    transcribe.add_argument("--json", action="store_true", help="print JSON lines")
    transcribe.add_argument("files", nargs="+")
    if recipe is None:
        whisper = transcribe.add_argument_group("a Whisper --checkpoint")
        whisper.add_argument("--language", default=None, help="Whisper language code, e.g. en (default: detected)")
        whisper.add_argument("--beam-size", type=int, default=None, help="0 = greedy (default: greedy)")
    _add_recipe_options(transcribe, "transcribe", recipe)

    synth = sub.add_parser("synthesize", help="text to speech with a trained workdir or a Matcha-TTS checkpoint "
                                              "(options: its recipe's)")
    model = synth.add_mutually_exclusive_group(required=True)
    model.add_argument("--workdir", help="a run directory trained by `jaxspeech train`")
    model.add_argument("--checkpoint", help="a Matcha-TTS Lightning checkpoint (.ckpt; single-speaker, e.g. LJSpeech)")
    synth.add_argument("--text", help="text to speak (long text is cut at phrase boundaries and joined)")
    synth.add_argument("--out", help="output .wav for --text")
    synth.add_argument("--text-file", help="one text per line")
    synth.add_argument("--out-dir", help="output directory for --text-file (NNNN.wav per line)")
    _add_recipe_options(synth, "synthesize", recipe)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    overrides = [a for a in argv if a.startswith("--config.")]
    plain = [a for a in argv if not a.startswith("--config.")]
    # Logging first: reading a workdir's recipe imports libraries that would configure it otherwise.
    verbose = bool({"-v", "--verbose"} & set(plain))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not verbose:  # orbax (absl) logs every save step by step; JAX logs its backend probing
        for name in ("absl", "jax._src.xla_bridge"):
            logging.getLogger(name).setLevel(logging.WARNING)
    command = next((a for a in plain if not a.startswith("-")), None)
    args = build_parser(_workdir_recipe(plain, command) if command in _RECIPE_COMMANDS else None).parse_args(plain)
    if overrides and args.command != "train":
        raise SystemExit(f"jaxspeech {args.command}: --config.* overrides only apply to `train`")
    if args.command == "train":
        return _train(args, overrides)
    handlers = {"quickstart": _quickstart, "corpus": _corpus_build, "evaluate": _evaluate, "transcribe": _transcribe,
                "synthesize": _synthesize}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
