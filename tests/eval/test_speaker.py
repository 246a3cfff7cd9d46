"""Speaker similarity: Resemblyzer embeddings tell the corpus's voices apart; cosine and nearest voice."""

import numpy as np
import pytest

from jaxspeech import audio
from jaxspeech.data.readers import load_records
from jaxspeech.data.tts import speaker_of
from jaxspeech.eval.speaker import (
    cloning_scores,
    cosine,
    nearest_voice,
    speaker_embeddings,
    voice_centroids,
    voice_encoder,
)

pytest.importorskip("resemblyzer")


def test_cosine_and_nearest_voice():
    np.testing.assert_allclose(cosine([1.0, 0.0], [[2.0, 0.0], [0.0, 3.0], [-1.0, 1.0]]), [1, 0, -0.5**0.5])
    centroids = voice_centroids(np.array([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0]]), ["a", "a", "b"])
    np.testing.assert_allclose(centroids["a"], [1.0, 0.0])
    assert nearest_voice(np.array([0.9, 0.2]), centroids) == "a"
    assert nearest_voice(np.array([0.1, 0.9]), centroids) == "b"


def test_real_utterances_of_one_voice_are_nearer_than_other_voices(tiny_corpus):
    records = load_records(tiny_corpus, split="train")
    speakers = [speaker_of(r) for r in records]
    voices = [s for s in sorted(set(speakers)) if speakers.count(s) >= 2][:4]
    chosen = [i for voice in voices for i in [j for j, s in enumerate(speakers) if s == voice][:3]]
    waves = [audio.load_audio(records[i]["audio"], sample_rate=22050) for i in chosen]
    embeddings = speaker_embeddings(waves, 22050, voice_encoder())
    assert embeddings.shape == (len(chosen), 256)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    names = [speakers[i] for i in chosen]
    similarity = cosine(embeddings[:, None], embeddings[None])
    same = [similarity[a, b] for a in range(len(chosen)) for b in range(a) if names[a] == names[b]]
    other = [similarity[a, b] for a in range(len(chosen)) for b in range(a) if names[a] != names[b]]
    assert same and other and np.mean(same) > np.mean(other) + 0.05


def test_cloning_scores_identify_real_utterances_of_the_prompt_voice_and_reject_others(tiny_corpus):
    records = load_records(tiny_corpus, split="train")
    by_voice = {}
    for record in records:
        by_voice.setdefault(speaker_of(record), []).append(audio.load_audio(record["audio"], sample_rate=22050))
    voices = [v for v, waves in by_voice.items() if len(waves) >= 4][:3]
    prompts, same, other = [by_voice[v][0] for v in voices], [by_voice[v][1] for v in voices], []
    for i, voice in enumerate(voices):
        other.append(by_voice[voices[(i + 1) % len(voices)]][1])
    references = {v: by_voice[v][2:4] for v in voices}
    encoder = voice_encoder()
    perfect = cloning_scores(same, prompts, same, other, voices, references, 22050, encoder)
    assert perfect["nearest_clone"] == perfect["nearest_ceiling"] == 1.0  # eSpeak voices are easy to tell apart
    assert perfect["sim_clone"] == pytest.approx(perfect["sim_ceiling"])
    assert perfect["sim_floor"] < perfect["sim_ceiling"]
    wrong = cloning_scores(other, prompts, same, other, voices, references, 22050, encoder)
    assert wrong["nearest_clone"] == 0.0 and wrong["voices"] == len(voices) == wrong["trials"]
    with pytest.raises(ValueError, match="no reference utterances"):
        cloning_scores(same, prompts, same, other, voices, {voices[0]: references[voices[0]]}, 22050, encoder)
