"""Padding of UniVoice's LLM rows with bucketing alone vs bucketing + packing, and an epoch's step time.

The training batches of ``--config`` (every utterance once as an ASR row and once as a TTS row), planned
for one epoch two ways: bucketing alone (each row its own LLM sequence, as long as the bucket's longest
possible row) and packed (``data.pack``: batches planned to fill a fixed number of packed rows of that
length, segment ids and one dual span per TTS row), for several ``data.pack_fill`` values: the share of
padded LLM positions, the packed rows per batch, the batches that needed an extra packed row (an extra
compilation). Then the loss-and-gradient step of a freshly initialised model over a whole epoch of each
(compilation excluded: every batch shape is run once before the clock starts), side by side in one
process. Writes JSON and the docs/benchmarks.md section.

    python experiments/univoice_packing.py --out experiments/results/univoice_packing.json
"""

from __future__ import annotations

import argparse
import datetime
import time

import jax
from benchmark_docs import command, machine, save_report, write_section

from jaxspeech.data.pipeline import SpeechDataset
from jaxspeech.data.readers import load_records
from jaxspeech.data.univoice import EOS, symbol_id, task_records, univoice_collate, univoice_labeler, univoice_tokenizer
from jaxspeech.models import univoice
from jaxspeech.train.config import load_config
from jaxspeech.train.recipes.univoice import make_loss_fn, model_config, train_packing
from jaxspeech.train.run_setup import bucketed_batches

TITLE = "## UniVoice: packed LLM rows vs bucketing alone"
FILLS = (0.9, 0.95, 0.98)
FACTORS = (1.0, 2.0)


def epoch(batches) -> list[dict]:
    return [next(batches) for _ in range(batches.batches_per_epoch)]


def shapes(batches: list[dict]) -> int:
    """Distinct batch shapes: the step's compilations."""
    return len({tuple((k, v.shape) for k, v in sorted(b.items())) for b in batches})


def rows_in(batches: list[dict]) -> int:
    return int(sum((b["index"] >= 0).sum() for b in batches))


def time_epoch(loss_fn, params, batches: list[dict]) -> float:
    """Seconds of value-and-grad over ``batches`` after a warm-up call on each distinct shape."""
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    key = jax.random.key(0)
    seen = set()
    for batch in batches:
        shape = tuple((k, v.shape) for k, v in sorted(batch.items()))
        if shape not in seen:
            seen.add(shape)
            jax.block_until_ready(grad_fn(params, batch, key))
    start = time.perf_counter()
    for batch in batches:
        jax.block_until_ready(grad_fn(params, batch, key))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/univoice_tiny.py")
    parser.add_argument("--no-timing", action="store_true", help="padding only")
    parser.add_argument("--out", default="experiments/results/univoice_packing.json")
    args = parser.parse_args()

    config = load_config(args.config)
    d = config.data
    records = load_records(d.dir, split=d.train_split)
    tokenizer = univoice_tokenizer(r["text"] for r in records)
    dataset = SpeechDataset(task_records(records), preset=d.preset, labeler=univoice_labeler(tokenizer),
                            cache=d.cache_features, max_seconds=d.max_seconds)  # fmt: skip
    config.model.llm.vocab_size = tokenizer.vocab_size
    default = load_config(args.config).data

    def loader(fill=None, factor=None, pack=True):
        config.data.pack_fill = default.pack_fill if fill is None else fill
        config.data.pack_length_factor = default.pack_length_factor if factor is None else factor
        packing = train_packing(config, dataset, univoice_collate) if pack else None
        return bucketed_batches(config, dataset, collate=univoice_collate, packing=packing)

    plans = {}
    for factor in FACTORS:
        for fill in FILLS:
            batches = loader(fill, factor)
            plans[f"{factor} {fill}"] = {"length_factor": factor, "fill": fill,
                                         "batches_per_epoch": batches.batches_per_epoch, **batches.padding_report()}
    unpacked = epoch(loader(pack=False))
    packed = {factor: epoch(loader(factor=factor)) for factor in FACTORS}
    bucketed_padding = next(iter(plans.values()))["token_padding_bucketed"]
    report = {
        "machine": machine(), "command": command(), "date": datetime.date.today().isoformat(),
        "config": args.config, "train_utterances": len(records), "rows_per_epoch": rows_in(unpacked),
        "default_fill": default.pack_fill, "default_length_factor": default.pack_length_factor,
        "bucketed": {"batches": len(unpacked), "shapes": shapes(unpacked), "token_padding": bucketed_padding},
        "packed": {str(f): {"batches": len(b), "shapes": shapes(b), "rows": rows_in(b)} for f, b in packed.items()},
        "plans": plans,
    }  # fmt: skip
    if not args.no_timing:
        graphdef, params = univoice.init(model_config(config.model), jax.random.key(0))
        loss_fn = make_loss_fn(config, graphdef, blank_id=symbol_id(tokenizer, EOS))
        seconds = {"bucketed": time_epoch(loss_fn, params, unpacked)}
        seconds.update({f"packed {f}": time_epoch(loss_fn, params, b) for f, b in packed.items()})
        report["epoch_seconds"] = seconds
    save_report(report, args.out)
    write_section(TITLE, section(report))


def section(r: dict) -> str:
    plans = "\n".join(
        f"| packed, rows {v['length_factor']:g}x, fill {v['fill']} | {v['token_padding_packed']:.1%} | "
        f"{v['batches_per_epoch']} | {', '.join(f'{n} x {p}' for n, p in zip(v['packed_rows'], v['packed_lengths']))} "
        f"| {v['grown_batches']} |"
        for v in r["plans"].values()
    )
    timing = ""
    if "epoch_seconds" in r:
        t = r["epoch_seconds"]
        packed = "; ".join(f"packed, rows {f:g}x: {t[f'packed {f}']:.1f} s "
                           f"(**{t['bucketed'] / t[f'packed {f}']:.2f}x**, {r['packed'][str(f)]['shapes']} shapes)"
                           for f in FACTORS)
        timing = (f"\nLoss and gradients of the tiny model (fresh weights) over one epoch of each plan (the same "
                  f"{r['rows_per_epoch']} rows; fill {r['default_fill']}), compilation excluded: bucketing alone "
                  f"{t['bucketed']:.1f} s ({r['bucketed']['shapes']} batch shapes); {packed}.\n")
    return f"""{TITLE}

Command: `{r['command']}`  
Machine: {r['machine']}  
Date: {r['date']}

One epoch of `{r['config']}`'s training batches ({r['train_utterances']} utterances, each as an ASR row and as a
TTS row): the share of padded LLM positions with bucketing alone (each row its own sequence, as long as
its bucket's longest possible row S) and packed (`data.pack`: each bucket's batches hold as many tokens
as its bucketed batches and are planned to fill `data.pack_fill` of R packed rows of P ~
`data.pack_length_factor` x S tokens; segment ids and one dual span per TTS row); "grown" batches needed
one more packed row than R (one more compilation).

| batching | LLM padding | batches | packed rows per bucket (R x P) | grown |
| --- | --- | --- | --- | --- |
| bucketing alone | {r['bucketed']['token_padding']:.1%} | {r['bucketed']['batches']} | - | - |
{plans}
{timing}
The audio encoder and the frame and text embeddings still run per row (their padding is the bucketing's);
packing shortens the LLM's work. On CPUs attention is dense over a packed row; on GPUs the Pallas kernel
skips the blocks between packed utterances, which favours longer packed rows there.
"""


if __name__ == "__main__":
    main()
