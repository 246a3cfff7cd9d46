"""Does UniVoice's flow read the text? Velocity error on infilled speech with its own text vs without or another's.

    python experiments/diagnose_univoice_text_use.py --workdir runs/univoice_tiny [--split valid]

For every utterance of the split, as training infills it (the first ``--prompt`` of its frames known, the rest
a span to infill, the whole transcript as the text), it measures the flow's velocity MSE on the span at fixed
flow times t with fixed noise three times: with the utterance's own text, with no text (as the CFG dropout
trains it), and with the next utterance's text (in the split's order). A model that speaks the text it is
given has a clearly lower error with its own text than with another's (``text_gain``: the relative drop); a
model whose error is the same both ways draws speech-like frames in the prompt's voice whatever the text
says, which is what the recognizer then fails to read. Prints one JSON object and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
from benchmark_docs import save_report
from flax import nnx

from jaxspeech import audio
from jaxspeech.data.bucketing import round_up
from jaxspeech.data.readers import load_records
from jaxspeech.data.univoice import TTS, spoken_text, symbol_id
from jaxspeech.models.hashed_graph import hashed, plain
from jaxspeech.models.univoice.model import Rows
from jaxspeech.train.recipes.univoice import load_speech

TIMES = (0.05, 0.3, 0.6, 0.9)
FRAME_MULTIPLE = 64


@functools.partial(jax.jit, static_argnames="graphdef")
def span_errors(graphdef, params, key, mel, lengths, text, text_lengths, prompt_lengths, t):
    """Per-row summed squared velocity error [B] and span sizes [B] at flow time t (a scalar), the rows'
    mels [B, T, n_mels] infilled after ``prompt_lengths`` frames."""
    model = nnx.merge(plain(graphdef), params)
    x1 = model.config.normalise(mel)
    frames = jnp.arange(mel.shape[1])[None, :]
    valid = frames < lengths[:, None]
    span = valid & (frames >= prompt_lengths[:, None])
    noise = jax.random.normal(key, x1.shape)
    rows = Rows(text=text, text_lengths=text_lengths, features=None, feature_lengths=jnp.zeros_like(lengths),
                x_t=(1 - t) * noise + t * x1, cond=jnp.where(span[..., None] | ~valid[..., None], 0.0, x1),
                frame_lengths=lengths, t=jnp.full(lengths.shape, t))  # fmt: skip
    error = jnp.sum(jnp.where(span[..., None], (model(rows).velocity - (x1 - noise)) ** 2, 0.0), axis=(1, 2))
    return error, jnp.sum(span, axis=1) * mel.shape[2]


def padded_batch(mels: list[np.ndarray], texts: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """(mel [B, T, F], lengths [B], text [B, L], text_lengths [B]), T a multiple of 64 frames."""
    mel = np.zeros((len(mels), int(round_up(max(len(m) for m in mels), FRAME_MULTIPLE)), mels[0].shape[1]), np.float32)
    text = np.zeros((len(texts), max(len(t) for t in texts)), np.int32)
    for row, (m, t) in enumerate(zip(mels, texts, strict=True)):
        mel[row, : len(m)], text[row, : len(t)] = m, t
    return mel, np.array([len(m) for m in mels], np.int32), text, np.array([len(t) for t in texts], np.int32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--prompt", type=float, default=0.3, help="share of each utterance's frames given")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="experiments/results/univoice_text_use.json")
    args = parser.parse_args()
    speech, config, step = load_speech(args.workdir)
    records = load_records(config.data.dir, split=args.split)[: args.limit or None]
    mels = [speech.mel(audio.load_audio(r["audio"], sample_rate=speech.preset.sample_rate)) for r in records]
    tts = symbol_id(speech.tokenizer, TTS)
    texts = [np.array([tts, *speech.tokenizer.encode(spoken_text(r["text"]))], np.int32) for r in records]
    graphdef = hashed(speech.graphdef)
    conditions = {"own_text": lambda i: texts[i], "no_text": lambda i: texts[i],  # no_text: its length set to 0
                  "another_text": lambda i: texts[(i + 1) % len(texts)]}  # fmt: skip
    sums = {name: {t: [0.0, 0] for t in TIMES} for name in conditions}
    for start in range(0, len(records), args.batch_size):
        rows = range(start, min(start + args.batch_size, len(records)))
        prompts = np.array([int(args.prompt * len(mels[i])) for i in rows], np.int32)
        for name, text_of in conditions.items():
            mel, lengths, text, text_lengths = padded_batch([mels[i] for i in rows], [text_of(i) for i in rows])
            if name == "no_text":
                text_lengths = np.zeros_like(text_lengths)
            for k, t in enumerate(TIMES):
                key = jax.random.fold_in(jax.random.key(config.seed), start * len(TIMES) + k)  # same per condition
                error, count = jax.device_get(span_errors(graphdef, speech.params, key, jnp.asarray(mel),
                                                          jnp.asarray(lengths), jnp.asarray(text),
                                                          jnp.asarray(text_lengths), jnp.asarray(prompts),
                                                          jnp.float32(t)))  # fmt: skip
                sums[name][t][0] += float(error.sum())
                sums[name][t][1] += int(count.sum())
    mse = {name: {f"t={t}": s[0] / max(s[1], 1) for t, s in by_t.items()} for name, by_t in sums.items()}
    gain = {f"t={t}": 1.0 - mse["own_text"][f"t={t}"] / mse["another_text"][f"t={t}"] for t in TIMES}
    report = {"workdir": args.workdir, "step": step, "split": args.split, "utterances": len(records),
              "prompt": args.prompt, "frame_text": config.model.get("frame_text", False),
              "velocity_mse": mse, "text_gain": gain}  # fmt: skip
    save_report(report, args.out)


if __name__ == "__main__":
    main()
