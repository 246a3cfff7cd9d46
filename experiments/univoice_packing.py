"""Padding of UniVoice's LLM rows with bucketing alone vs bucketing + packing, and the train step's speed.

One epoch of the training batches of ``--config`` (bucketed as the run does; every utterance once as an
ASR row and once as a TTS row): the share of padded LLM positions when each row is its own LLM
sequence, and when the rows of a batch are packed into fewer rows of the same length (first-fit
decreasing, ``data.packing``) with the packed row count rounded up to 1, 2 and 4; the number of
distinct batch shapes (compilations) each gives. Then the loss-and-gradient step of a freshly
initialised model on the same ``--timed-batches`` batches, unpacked and packed, side by side in one
process (compilation excluded: every shape is run once before the clock starts). Writes JSON and the
docs/benchmarks.md section.

    python experiments/univoice_packing.py --out experiments/results/univoice_packing.json
"""

from __future__ import annotations

import argparse
import datetime
import functools
import math
import time

import jax
import numpy as np
from benchmark_docs import command, machine, save_report, write_section

from jaxspeech.data.packing import packing_padding, plan_packing
from jaxspeech.data.pipeline import SpeechDataset
from jaxspeech.data.readers import load_records
from jaxspeech.data.univoice import task_records, univoice_collate, univoice_labeler, univoice_tokenizer
from jaxspeech.models import univoice
from jaxspeech.train.config import load_config
from jaxspeech.train.recipes.univoice import make_loss_fn, model_config
from jaxspeech.train.run_setup import bucketed_batches

TITLE = "## UniVoice: packed LLM rows vs bucketing alone"
MULTIPLES = (1, 2, 4)


def epoch_batches(config, dataset: SpeechDataset) -> list[dict]:
    """One epoch of training batches (bucketed, shuffled as the run's first epoch), without packing."""
    batches = bucketed_batches(config, dataset, collate=univoice_collate)
    return [next(batches) for _ in range(batches.batches_per_epoch)]


def padding_table(batches: list[dict], row_tokens) -> dict:
    """LLM padding unpacked and packed (per row multiple) over ``batches``, with the distinct shapes."""
    tokens = total_unpacked = 0
    packed = dict.fromkeys(MULTIPLES, 0)
    shapes = {m: set() for m in MULTIPLES}
    rows = dict.fromkeys(MULTIPLES, 0)
    for batch in batches:
        lengths, length = row_tokens(batch)
        tokens += int(lengths.sum())
        total_unpacked += len(lengths) * length
        for m in MULTIPLES:
            owner = plan_packing(lengths, length, row_multiple=m)["pack_owner"]
            packed[m] += owner.size
            rows[m] += owner.shape[0]
            shapes[m].add(owner.shape)
    unpacked_shapes = {(b["tokens"].shape, b["mel"].shape) for b in batches}
    return {
        "batches": len(batches), "llm_tokens": tokens,
        "unpacked": {"padding": 1 - tokens / total_unpacked, "rows": sum(len(b["tts"]) for b in batches),
                     "shapes": len(unpacked_shapes)},
        "packed": {str(m): {"padding": 1 - tokens / packed[m], "rows": rows[m], "shapes": len(shapes[m])}
                   for m in MULTIPLES},
    }  # fmt: skip


def time_steps(loss_fn, params, batches: list[dict], repeats: int) -> float:
    """Seconds of one pass of value-and-grad over ``batches`` (best of ``repeats``, after a warm-up pass)."""
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    key = jax.random.key(0)
    jax.block_until_ready([grad_fn(params, b, key) for b in batches])
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            jax.block_until_ready(grad_fn(params, batch, key))
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/univoice_tiny.py")
    parser.add_argument("--timed-batches", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="experiments/results/univoice_packing.json")
    args = parser.parse_args()

    config = load_config(args.config)
    d = config.data
    records = load_records(d.dir, split=d.train_split)
    tokenizer = univoice_tokenizer(r["text"] for r in records)
    dataset = SpeechDataset(task_records(records), preset=d.preset, labeler=univoice_labeler(tokenizer),
                            cache=d.cache_features, max_seconds=d.max_seconds)  # fmt: skip
    config.model.llm.vocab_size = tokenizer.vocab_size
    model = model_config(config.model)
    row_tokens = functools.partial(univoice.row_tokens, model)
    batches = epoch_batches(config, dataset)
    padding = padding_table(batches, row_tokens)

    multiple = math.lcm(d.row_multiple, d.pack_rows_multiple)
    timed = batches[: args.timed_batches]
    packed = [{**b, **plan_packing(*row_tokens(b), row_multiple=multiple)} for b in timed]
    graphdef, params = univoice.init(model, jax.random.key(0))
    loss_fn = make_loss_fn(config, graphdef)
    seconds = {"unpacked": time_steps(loss_fn, params, timed, args.repeats),
               "packed": time_steps(loss_fn, params, packed, args.repeats)}  # fmt: skip
    timed_padding = [packing_padding(b, *row_tokens(b)) for b in packed]
    report = {
        "machine": machine(), "command": command(), "date": datetime.date.today().isoformat(),
        "config": args.config, "train_utterances": len(records), "padding": padding,
        "timing": {"batches": len(timed), "pack_row_multiple": multiple, "seconds": seconds,
                   "speedup": seconds["unpacked"] / seconds["packed"],
                   "padding_unpacked": float(np.mean([p["padding_unpacked"] for p in timed_padding])),
                   "padding_packed": float(np.mean([p["padding_packed"] for p in timed_padding]))},
    }  # fmt: skip
    save_report(report, args.out)
    write_section(TITLE, section(report))


def section(r: dict) -> str:
    p, t = r["padding"], r["timing"]
    rows = "\n".join(
        f"| packed, rows rounded up to {m} | {v['padding']:.1%} | {v['rows']} | {v['shapes']} |"
        for m, v in p["packed"].items()
    )
    return f"""{TITLE}

Command: `{r['command']}`  
Machine: {r['machine']}  
Date: {r['date']}

One epoch of `{r['config']}`'s training batches ({p['batches']} batches, {r['train_utterances']} utterances, each
as an ASR row and as a TTS row, {p['llm_tokens']} LLM tokens): the share of padded LLM positions with
bucketing alone (each row its own sequence, padded to the batch's longest possible row) and with the rows
of each batch packed into rows of that length (first-fit decreasing, segment ids and one dual span per
TTS row), and how many distinct batch shapes (compilations of the step) each gives.

| batching | LLM padding | LLM rows | shapes |
| --- | --- | --- | --- |
| bucketing alone | {p['unpacked']['padding']:.1%} | {p['unpacked']['rows']} | {p['unpacked']['shapes']} |
{rows}

Loss and gradients of the tiny model (fresh weights) over the epoch's first {t['batches']} batches, the same
batches unpacked and packed (rows rounded up to {t['pack_row_multiple']}), best of repeated passes after a
warm-up pass: {t['seconds']['unpacked']:.2f} s unpacked vs {t['seconds']['packed']:.2f} s packed,
**{t['speedup']:.2f}x** (LLM padding in these batches {t['padding_unpacked']:.1%} vs {t['padding_packed']:.1%}).
The audio encoder and the frame and text embeddings still run per row; packing shortens the LLM's work.
"""


if __name__ == "__main__":
    main()
