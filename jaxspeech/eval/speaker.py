"""Speaker similarity with a pretrained speaker encoder that runs offline: Resemblyzer's GE2E voice encoder
(Wan et al. 2018; a 3-layer LSTM giving 256-d L2-normalised embeddings, its weights shipped inside the
``resemblyzer`` wheel), from the optional extra ``pip install 'jaxspeech[speaker]'``.

Similarities are only comparable within one encoder (the literature's SIM uses WavLM + ECAPA): report
a ceiling (another real utterance of the same speaker) and a floor (another speaker) beside every
figure, and the identification rate (``nearest_voice``) that does not depend on the scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxspeech.audio import resample

ENCODER_RATE = 16000


def voice_encoder() -> Any:
    """Resemblyzer's pretrained ``VoiceEncoder`` on the CPU; ImportError with the install hint without it."""
    try:
        from resemblyzer import VoiceEncoder
    except ImportError as err:
        raise ImportError("speaker similarity needs the `resemblyzer` package (and setuptools<81 for its "
                          "webrtcvad): pip install 'jaxspeech[speaker]'") from err  # fmt: skip
    return VoiceEncoder("cpu", verbose=False)


def speaker_embeddings(waveforms: Sequence[np.ndarray], sample_rate: int, encoder: Any = None) -> np.ndarray:
    """[N, 256] unit-norm embeddings of mono ``waveforms`` at ``sample_rate`` (resampled to 16 kHz;
    Resemblyzer trims long silences and normalises the volume before embedding)."""
    from resemblyzer import preprocess_wav

    encoder = encoder or voice_encoder()
    out = []
    for waveform in waveforms:
        wav = resample(np.asarray(waveform, np.float32), sample_rate, ENCODER_RATE)
        trimmed = preprocess_wav(wav, source_sr=ENCODER_RATE)
        if trimmed.size < ENCODER_RATE // 10:  # all silence by its voice detector: embed what there is
            trimmed = wav
        out.append(encoder.embed_utterance(trimmed))
    return np.stack(out).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of [..., D] embeddings (broadcasting)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, -1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def voice_centroids(embeddings: np.ndarray, speakers: Sequence[str]) -> dict[str, np.ndarray]:
    """Unit-norm mean embedding per speaker."""
    centroids = {}
    for speaker in sorted(set(speakers)):
        mean = embeddings[[s == speaker for s in speakers]].mean(0)
        centroids[speaker] = mean / max(np.linalg.norm(mean), 1e-12)
    return centroids


def nearest_voice(embedding: np.ndarray, centroids: Mapping[str, np.ndarray]) -> str:
    """The speaker whose centroid is most similar to ``embedding``."""
    names = list(centroids)
    return names[int(np.argmax(cosine(embedding[None], np.stack([centroids[n] for n in names]))))]


def cloning_scores(cloned: Sequence[np.ndarray], prompts: Sequence[np.ndarray], same_voice: Sequence[np.ndarray],
                   other_voice: Sequence[np.ndarray], voices: Sequence[str],
                   references: Mapping[str, Sequence[np.ndarray]], sample_rate: int,
                   encoder: Any = None) -> dict[str, float]:
    """Zero-shot cloning against its bounds. Per trial i: ``cloned[i]`` made from ``prompts[i]`` of speaker
    ``voices[i]``; ``same_voice[i]`` another real utterance of that speaker (the ceiling), ``other_voice[i]``
    a real utterance of another speaker (the floor). ``references``: real utterances of every voice
    (prompt voices included) whose centroids the cloned clip is identified against.

    Returns sim_clone, sim_ceiling, sim_floor (mean cosine to the prompt), and the share of trials whose
    cloned clip / ceiling utterance is nearest to the prompt's voice (nearest_clone, nearest_ceiling),
    with the number of voices it was chosen among."""
    encoder = encoder or voice_encoder()
    embed = lambda waves: speaker_embeddings(waves, sample_rate, encoder)  # noqa: E731
    prompt, clone, ceiling, floor = embed(prompts), embed(cloned), embed(same_voice), embed(other_voice)
    names = [name for name, waves in references.items() for _ in waves]
    centroids = voice_centroids(embed([w for waves in references.values() for w in waves]), names)
    missing = sorted(set(voices) - set(centroids))
    if missing:
        raise ValueError(f"no reference utterances for the prompt voices {missing}")
    return {
        "sim_clone": float(cosine(clone, prompt).mean()),
        "sim_ceiling": float(cosine(ceiling, prompt).mean()),
        "sim_floor": float(cosine(floor, prompt).mean()),
        "nearest_clone": float(np.mean([nearest_voice(e, centroids) == v for e, v in zip(clone, voices, strict=True)])),
        "nearest_ceiling": float(np.mean([nearest_voice(e, centroids) == v
                                          for e, v in zip(ceiling, voices, strict=True)])),  # fmt: skip
        "voices": len(centroids),
        "trials": len(voices),
    }
