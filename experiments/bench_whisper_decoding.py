"""Whisper decoding speed: jaxspeech vs transformers (PyTorch) on CPU, same checkpoint, same audio.

    python experiments/bench_whisper_decoding.py --corpus /tmp/corpus_default --torch-threads 1 2 \
        --out runs/bench_whisper_decoding.json

A randomly initialised ``transformers`` WhisperForConditionalGeneration with whisper-tiny's
architecture (no model hub here, so the config is written out below) is saved to a temporary
directory and imported with ``jaxspeech.models.whisper.import_transformers_checkpoint``. Both
implementations decode the same log-mel features (jaxspeech's ``whisper_80`` front end, 30 s
windows) of test-seen utterances after the same prefix (sot, en, transcribe, notimestamps),
greedy and beam 4, at batch 1 and batch ``--batch``. Random weights do not end with eos
reliably, so eos is suppressed in both and every row generates exactly ``--new-tokens`` tokens.

transformers runs ``GenerationMixin.generate`` (the plain loop, without Whisper's own
``generate`` wrapper and its extra processing) under ``torch.inference_mode``, once per
``--torch-threads`` value (intra-op threads; on a machine shared with other work fewer threads
can be faster); jaxspeech runs ``whisper.generate`` (encoder, prefix and token loop in one jit,
compiled before timing) with XLA's default threading. Every call is timed whole, encoder
included, and the implementations' calls alternate round by round, so load from other work
hits all alike. tokens/s counts the generated tokens of the returned hypotheses (batch x new
tokens; beam search's K hypotheses per row are not counted K times). Also reported: how many
rows and tokens of transformers' output equal jaxspeech's. Writes JSON (--out) and replaces
this benchmark's section of docs/benchmarks.md (unless --no-docs).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from benchmark_docs import command, machine, save_report, write_section
from jaxspeech.audio import load_audio, log_mel
from jaxspeech.data.readers import load_records
from jaxspeech.eval.rtf import interleaved_seconds
from jaxspeech.models import whisper

# openai/whisper-tiny's config.json (architecture and special tokens); suppress lists left out.
WHISPER_TINY = dict(
    vocab_size=51865, num_mel_bins=80, d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
    decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536, max_source_positions=1500,
    max_target_positions=448, decoder_start_token_id=50258, eos_token_id=50257, pad_token_id=50257,
    bos_token_id=50257, begin_suppress_tokens=None, suppress_tokens=None,
)  # fmt: skip
PREFIX = (50258, 50259, 50359, 50363)  # <|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|>
SECTION = "## Whisper decoding speed: jaxspeech vs transformers (CPU)"
TARGET = 2.0  # issue 5: at least 2x the tokens/s of transformers


def build_checkpoint(path: str, seed: int) -> torch.nn.Module:
    """Saves a random whisper-tiny-shaped transformers model under ``path``; returns it (eval mode)."""
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**WHISPER_TINY)).eval()
    model.save_pretrained(path)
    return model


def corpus_features(corpus: str, count: int) -> tuple[np.ndarray, list[str]]:
    """Log-mel features [count, 80, 3000] of the first ``count`` test-seen utterances, and their ids."""
    records = load_records(corpus, "test-seen")[:count]
    waves = [load_audio(os.path.join(corpus, r["audio"]), sample_rate=16000) for r in records]
    mels = [np.asarray(log_mel(jnp.asarray(w), "whisper_80", pad_or_trim=True)).T for w in waves]
    return np.stack(mels), [r["id"] for r in records]


def jax_decoder(checkpoint: str, *, new_tokens: int):
    """``decode(features [B,80,3000], beam) -> tokens [B, new_tokens]`` with jaxspeech (eos suppressed)."""
    config, graphdef, params = whisper.import_transformers_checkpoint(checkpoint)

    def decode(features, beam):
        return whisper.generate(graphdef, params, config, features, PREFIX, max_new_tokens=new_tokens,
                                beam_size=None if beam == 1 else beam,
                                suppress_tokens=(config.eos_token_id,)).tokens  # fmt: skip

    return decode


def torch_decoder(model: torch.nn.Module, *, new_tokens: int, threads: int):
    """``decode(features [B,80,3000], beam) -> tokens [B, new_tokens]`` with transformers (eos suppressed)
    on ``threads`` intra-op threads."""

    def decode(features, beam):
        torch.set_num_threads(threads)
        features = torch.from_numpy(features)
        prefix = torch.tensor([PREFIX] * features.shape[0])
        with torch.inference_mode():
            out = transformers.GenerationMixin.generate(
                model, input_features=features, decoder_input_ids=prefix, max_new_tokens=new_tokens,
                min_new_tokens=new_tokens, do_sample=False, num_beams=beam, length_penalty=1.0,
                suppress_tokens=[WHISPER_TINY["eos_token_id"]], pad_token_id=WHISPER_TINY["pad_token_id"],
            )  # fmt: skip
        return out[:, len(PREFIX) :].numpy()

    return decode


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """Token agreement of two [B, N] id arrays: equal rows, equal tokens, and the common prefix per row."""
    equal = a == b
    prefix = np.where(equal.all(1), a.shape[1], np.argmin(equal, axis=1))
    return {"rows_equal": int(equal.all(1).sum()), "rows": int(a.shape[0]),
            "tokens_equal_fraction": float(equal.mean()), "common_prefix": prefix.tolist()}  # fmt: skip


def run_case(decoders: dict, features: np.ndarray, beam: int, *, new_tokens: int, repeats: int) -> dict:
    """One (batch, beam) case: every decoder's interleaved timings and tokens/s, the speed-up of
    jaxspeech over each other decoder, and each one's token agreement with jaxspeech."""
    outputs, times = interleaved_seconds(
        {name: (lambda d=decode: d(features, beam)) for name, decode in decoders.items()}, repeats)
    generated = features.shape[0] * new_tokens
    row = {"batch": int(features.shape[0]), "beam": beam, "new_tokens": new_tokens, "repeats": repeats}
    for name, seconds in times.items():
        row[name] = {"median_s": statistics.median(seconds), "min_s": min(seconds), "seconds": seconds,
                     "tokens_per_s": generated / statistics.median(seconds)}  # fmt: skip
        if name != "jaxspeech":
            row[name]["speedup"] = row[name]["median_s"] / row["jaxspeech"]["median_s"]
            row[name]["agreement"] = agreement(np.asarray(outputs["jaxspeech"]), np.asarray(outputs[name]))
    print(json.dumps(row), flush=True)
    return row


def markdown(result: dict) -> str:
    """The benchmarks.md section: one row per case, one column per transformers setting."""
    others = [name for name in result["rows"][0] if name.startswith("transformers")]
    lines = [
        SECTION, "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Versions: {result['versions']}  ",
        f"Date: {result['date']}; load average (1, 5, 15 min) before {result['load_before']}, "
        f"after {result['load_after']}", "",
        "Cells: tokens/s (median of the interleaved calls); in brackets jaxspeech's speed-up. "
        "Agreement: rows (tokens) where jaxspeech's ids equal transformers'.", "",
        "| batch | decoding | jaxspeech | " + " | ".join(others) + " | agreement |",
        "| --- | --- | --- | " + " | ".join("---" for _ in others) + " | --- |",
    ]  # fmt: skip
    for row in result["rows"]:
        agree = row[others[0]]["agreement"]
        cells = [f"{row[name]['tokens_per_s']:.1f} ({row[name]['speedup']:.2f}x)" for name in others]
        lines.append(
            f"| {row['batch']} | {'greedy' if row['beam'] == 1 else 'beam ' + str(row['beam'])} "
            f"| {row['jaxspeech']['tokens_per_s']:.1f} | " + " | ".join(cells) + " "
            f"| {agree['rows_equal']}/{agree['rows']} ({100 * agree['tokens_equal_fraction']:.0f}%) |"
        )
    lines.append("")
    for name in others:
        speedups = [row[name]["speedup"] for row in result["rows"]]
        met = sum(x >= TARGET for x in speedups)
        lines.append(f"- against {name}: speed-up {min(speedups):.2f}x to {max(speedups):.2f}x; "
                     f"target {TARGET:g}x met in {met} of {len(speedups)} cases")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="/tmp/corpus_default", help="embedded corpus directory (test-seen)")
    parser.add_argument("--out", default="runs/bench_whisper_decoding.json")
    parser.add_argument("--batch", type=int, default=4, help="the larger batch (the smaller is 1)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4], help="1 = greedy")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per implementation and case")
    parser.add_argument("--torch-threads", type=int, nargs="+", default=[torch.get_num_threads()],
                        help="transformers' intra-op thread counts, each timed as its own column")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the section of docs/benchmarks.md")
    args = parser.parse_args()

    load_before = os.getloadavg()
    features, ids = corpus_features(args.corpus, args.batch)
    with tempfile.TemporaryDirectory() as checkpoint:
        model = build_checkpoint(checkpoint, args.seed)
        decoders = {"jaxspeech": jax_decoder(checkpoint, new_tokens=args.new_tokens)}
        for threads in args.torch_threads:
            decoders[f"transformers, {threads} thread{'s' * (threads > 1)}"] = torch_decoder(
                model, new_tokens=args.new_tokens, threads=threads)
        rows = [run_case(decoders, features[:batch], beam, new_tokens=args.new_tokens, repeats=args.repeats)
                for batch in sorted({1, args.batch}) for beam in args.beams]  # fmt: skip
    result = {
        "command": command(),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "versions": f"jax {jax.__version__}, torch {torch.__version__}, transformers {transformers.__version__}",
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "utterances": ids,
        "rows": rows,
    }
    save_report(result, args.out, echo=False)
    section = markdown(result)
    print(section)
    if not args.no_docs:
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
