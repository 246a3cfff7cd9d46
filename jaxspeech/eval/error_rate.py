"""Corpus-level character and word error rates (jiwer), on normalised text."""

from collections.abc import Sequence

import jiwer

from jaxspeech.text import normalize_for_asr


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """CER and WER over a corpus: total edits / total reference length, both texts normalised.

    An empty hypothesis counts as all deletions; an empty reference is an error (nothing to score).
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize_for_asr(r) for r in references]
    if not refs or any(not r for r in refs):
        raise ValueError("every reference must be non-empty after normalisation")
    hyps = [normalize_for_asr(h) for h in hypotheses]
    return {
        "cer": float(jiwer.cer(refs, hyps)),
        "wer": float(jiwer.wer(refs, hyps)),
        "utterances": len(refs),
    }
