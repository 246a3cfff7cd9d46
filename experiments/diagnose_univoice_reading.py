"""Does UniVoice's LLM read the speech prefix? Teacher-forced transcripts with their own speech vs another's.

    python experiments/diagnose_univoice_reading.py --workdir runs/univoice_tiny [--split valid]

For every utterance of the split, one at a time (as ``transcribe`` runs: the speech embeddings prefilled
into the KV cache, then ``<asr>`` and the transcript), it scores the transcript teacher-forced twice: after
the utterance's own speech, and after the next utterance's (another text, in the split's order). It reports
the mean negative log-likelihood per token (transcript and ``<eos>``) and the argmax accuracy, over all
tokens, over the first transcript token alone (the one a text prior can guess least) and by fifths of the
transcript (where in the utterance the speech stops helping). If the scores with
another utterance's speech are close to those with the right one, the LLM predicts the transcript from its
text prior and does not read the speech; ``encoder_ctc_cer`` (``jaxspeech evaluate``) says whether the
encoder heard it. Prints one JSON object (and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
from benchmark_docs import save_report
from flax import nnx

from jaxspeech import audio
from jaxspeech.data.readers import load_records
from jaxspeech.data.univoice import ASR, EOS, symbol_id
from jaxspeech.models.hashed_graph import hashed, plain
from jaxspeech.models.llm.model import prefill
from jaxspeech.text import normalize_for_asr
from jaxspeech.train.recipes.univoice import load_speech

TOKEN_BUCKET = 64  # transcripts are padded to a multiple of this: few compiled shapes


@functools.partial(jax.jit, static_argnames="graphdef")
def token_log_probs(graphdef, params, features, lengths, tokens):
    """Log-probabilities [B, N-1, V] of tokens[:, 1:] given the speech prefix and tokens[:, :-1]."""
    model = nnx.merge(plain(graphdef), params)
    speech, speech_lengths = model.speech_embeddings(features, lengths)
    _, cache = prefill(model.llm, model.config.llm, speech, speech_lengths, speech.shape[1] + tokens.shape[1])
    logits, _ = model.llm(tokens[:, :-1], cache=cache)
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)


def score(log_probs: np.ndarray, tokens: np.ndarray, count: int) -> dict:
    """NLL and argmax hits of tokens[1:count] (count: real tokens, <asr> first)."""
    targets = tokens[1:count]
    picked = log_probs[np.arange(count - 1), targets]
    hits = log_probs[: count - 1].argmax(-1) == targets
    return {"nll": -picked, "hits": hits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    speech, config, step = load_speech(args.workdir)
    records = load_records(config.data.dir, split=args.split)[: args.limit or None]
    asr, eos = (symbol_id(speech.tokenizer, s) for s in (ASR, EOS))
    waves = [audio.load_audio(r["audio"], sample_rate=speech.preset.sample_rate) for r in records]
    transcripts = [[asr, *speech.tokenizer.encode(normalize_for_asr(r["text"])), eos] for r in records]
    graphdef = hashed(speech.graphdef)
    results = {"own": [], "other": []}
    for i, ids in enumerate(transcripts):
        tokens = np.zeros((1, -(-len(ids) // TOKEN_BUCKET) * TOKEN_BUCKET + 1), np.int32)
        tokens[0, : len(ids)] = ids
        for name, wave in (("own", waves[i]), ("other", waves[(i + 1) % len(waves)])):
            features, lengths = speech.asr_features([wave])
            log_probs = np.asarray(token_log_probs(graphdef, speech.params, jnp.asarray(features), lengths,
                                                   jnp.asarray(tokens)))[0]
            results[name].append(score(log_probs, tokens[0], len(ids)))

    def summary(rows: list[dict]) -> dict:
        fifths = [np.concatenate([r["hits"][np.floor(np.arange(len(r["hits"])) * 5 / len(r["hits"])) == k]
                                  for r in rows]) for k in range(5)]
        return {"nll_per_token": float(np.mean(np.concatenate([r["nll"] for r in rows]))),
                "token_accuracy": float(np.mean(np.concatenate([r["hits"] for r in rows]))),
                "first_token_nll": float(np.mean([r["nll"][0] for r in rows])),
                "first_token_accuracy": float(np.mean([r["hits"][0] for r in rows])),
                "accuracy_by_fifth_of_transcript": [float(np.mean(f)) for f in fifths]}

    report = {"workdir": args.workdir, "step": step, "split": args.split, "utterances": len(records),
              "own_speech": summary(results["own"]), "another_utterances_speech": summary(results["other"])}
    if args.out:
        save_report(report, args.out)
    else:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
