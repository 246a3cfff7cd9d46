import collections
import json
import os
import string

import pytest
import soundfile

from jaxspeech.data import corpus, sentences
from jaxspeech.data.readers import load_records

SIZE = 40


def _files(root):
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
            for d, _, names in os.walk(root) for f in names if f != "corpus.json"}


def _manifest(root, split):
    with open(os.path.join(root, f"{split}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    summary = corpus.build_corpus(root, size=SIZE, seed=0, workers=2)
    return root, summary


# --- sentence grammar -------------------------------------------------------------------------------

def test_sentences_are_deterministic_distinct_and_varied():
    first = sentences.generate_sentences(600, seed=7)
    assert first == sentences.generate_sentences(600, seed=7)
    assert first != sentences.generate_sentences(600, seed=8)
    texts = [s.text for s in first]
    assert len(set(texts)) == len(texts)
    kinds = collections.Counter(s.kind for s in first)
    assert set(kinds) == set(sentences.KINDS) and min(kinds.values()) > 60
    for s in first:
        n_words = len(s.text.split())
        assert sentences.MIN_WORDS <= n_words <= sentences.MAX_WORDS
        assert s.text[0].isupper() and s.text[-1] in ".?"
        assert (s.text[-1] == "?") == (s.kind == "question")
        if s.kind == "comma":
            assert "," in s.text
    assert sum(any(c.isdigit() for c in t) for t in texts) > 60  # numbers written as digits
    used = {w.strip(string.punctuation).lower() for t in texts for w in t.split()}
    assert len({w for w in used if not w.isdigit()}) > 400


def test_plural_forms():
    assert [sentences.plural(w) for w in ("apple", "box", "knife", "city", "sheep", "scarf")] == [
        "apples", "boxes", "knives", "cities", "sheep", "scarves"]


# --- planning ---------------------------------------------------------------------------------------

def test_split_sizes():
    assert corpus.split_sizes(40) == {"train": 34, "valid": 2, "test-seen": 2, "test-unseen": 2}
    sizes = corpus.split_sizes(corpus.DEFAULT_SIZE)
    assert sum(sizes.values()) == corpus.DEFAULT_SIZE and sizes["train"] / corpus.DEFAULT_SIZE == pytest.approx(
        0.85, abs=0.01)
    with pytest.raises(ValueError, match="corpus size"):
        corpus.split_sizes(5)


def test_plan_splits_are_disjoint_and_speakers_held_out():
    plan = corpus.plan_corpus(400, seed=3)
    assert plan == corpus.plan_corpus(400, seed=3)
    texts = collections.defaultdict(set)
    speakers = collections.defaultdict(set)
    for u in plan:
        texts[u.split].add(u.text)
        speakers[u.split].add(u.speaker)
    for a in corpus.SPLITS:
        for b in corpus.SPLITS:
            if a < b:
                assert not texts[a] & texts[b], (a, b)
    unseen = {s.name for s in corpus.UNSEEN_SPEAKERS}
    train = {s.name for s in corpus.TRAIN_SPEAKERS}
    assert len(unseen) >= 2 and len(train | unseen) >= 10 and not unseen & train
    assert speakers["test-unseen"] == unseen
    assert speakers["train"] == train and speakers["test-seen"] <= train and speakers["valid"] <= train
    by_name = {s.name: s for s in corpus.TRAIN_SPEAKERS + corpus.UNSEEN_SPEAKERS}
    for u in plan:  # prosody drawn inside each speaker's own ranges
        s = by_name[u.speaker]
        assert s.rate[0] <= u.rate <= s.rate[1] and s.pitch[0] <= u.pitch <= s.pitch[1]
        assert s.pitch_range[0] <= u.pitch_range <= s.pitch_range[1]


def test_the_many_voice_set_holds_out_whole_variants_and_every_voice_speaks(tmp_path):
    train, unseen = corpus.voice_set("many", seed=0)
    assert (train, unseen) == corpus.voice_set("many", seed=0)
    variant = lambda speaker: speaker.name.split("+")[1]  # noqa: E731
    assert len(train) >= 100 and len({variant(s) for s in unseen}) >= 10
    assert not {variant(s) for s in train} & {variant(s) for s in unseen}  # unseen timbres, not only accents
    assert {s.name.split("+")[1] for s in corpus.UNSEEN_SPEAKERS} <= {variant(s) for s in unseen}
    assert not any("robo" in variant(s) or "whisper" in variant(s) for s in train + unseen)
    for s in train + unseen:
        assert 80 <= s.rate[0] < s.rate[1] <= 450 and 0 <= s.pitch[0] < s.pitch[1] <= 100
        assert 0 <= s.pitch_range[0] < s.pitch_range[1] <= 100
    plan = corpus.plan_corpus(400, seed=0, voices="many")
    assert {u.speaker for u in plan if u.split == "test-unseen"} <= {s.name for s in unseen}
    assert len({u.speaker for u in plan if u.split == "train"}) >= 100
    summary = corpus.build_corpus(tmp_path, size=16, seed=0, workers=2, voices="many")
    assert summary["voices"] == "many" and summary["splits"]["train"]["utterances"] == corpus.split_sizes(16)["train"]
    with pytest.raises(ValueError, match="unknown voice set"):
        corpus.voice_set("all")


# --- building ---------------------------------------------------------------------------------------

def test_build_is_reproducible_across_workers_and_seed_dependent(built, tmp_path):
    root, _ = built
    again = corpus.build_corpus(tmp_path / "again", size=SIZE, seed=0, workers=1)
    assert again["hours"] > 0
    reference = _files(root)
    assert len([f for f in reference if f.endswith(".wav")]) == SIZE
    assert _files(tmp_path / "again") == reference  # byte-identical manifests and wavs
    corpus.build_corpus(tmp_path / "other", size=SIZE, seed=1, workers=2)
    other = _files(tmp_path / "other")
    assert other["train.jsonl"] != reference["train.jsonl"]
    assert other["wavs/train-000000.wav"] != reference["wavs/train-000000.wav"]


def test_built_manifests_match_audio_and_summary(built):
    root, summary = built
    assert summary == json.loads((root / "corpus.json").read_text())
    assert summary["size"] == SIZE and summary["sample_rate"] == 22050 and summary["seed"] == 0
    all_speakers = set()
    for split in corpus.SPLITS:
        records = _manifest(root, split)
        assert [r["id"] for r in records] == sorted(r["id"] for r in records)
        assert summary["splits"][split]["utterances"] == len(records)
        assert summary["splits"][split]["hours"] == pytest.approx(sum(r["duration"] for r in records) / 3600, abs=1e-4)
        assert summary["splits"][split]["speakers"] == sorted({r["speaker"] for r in records})
        for r in records:
            assert r["id"].startswith(split + "-") and r["audio"] == f"wavs/{r['id']}.wav"
            info = soundfile.info(str(root / r["audio"]))
            assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
            assert r["duration"] == pytest.approx(info.frames / 22050, abs=5e-4)
            assert r["kind"] in sentences.KINDS and r["phonemes"] and r["sample_rate"] == 22050
            words = " ".join(w["word"] for w in r["words"]).split()
            assert words == [w for w in (t.strip(string.punctuation) for t in r["text"].split()) if w]
            times = [t for w in r["words"] for t in (w["start"], w["end"])]
            assert times == sorted(times) and times[-1] <= r["duration"]
            assert all(0 <= p["start"] < p["end"] <= r["duration"] for p in r["phones"])
            all_speakers.add(r["speaker"])
    assert len(all_speakers) >= 10
    assert set(summary["splits"]["test-unseen"]["speakers"]).isdisjoint(summary["splits"]["train"]["speakers"])
    texts = {split: {r["text"] for r in _manifest(root, split)} for split in corpus.SPLITS}
    assert sum(len(t) for t in texts.values()) == len(set().union(*texts.values())) == SIZE


def test_built_corpus_loads_through_readers(built):
    root, _ = built
    records = load_records(root, split="test-unseen")
    assert len(records) == 2 and all(os.path.isfile(r["audio"]) for r in records)
    with pytest.raises(ValueError, match="test-seen, test-unseen, train, valid"):
        load_records(root)


def test_build_refuses_foreign_directory_and_rebuilds_own(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="no corpus.json"):
        corpus.build_corpus(foreign, size=8)
    assert (foreign / "precious.txt").read_text() == "keep me"
    own = tmp_path / "own"
    corpus.build_corpus(own, size=12, seed=0, workers=1)
    corpus.build_corpus(own, size=8, seed=0, workers=1)
    assert len(os.listdir(own / "wavs")) == 8  # no stale wavs from the larger build


def test_fork_helper_reports_child_errors():
    assert corpus._call_in_fork(pow, 2, 10) == 1024
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        corpus._call_in_fork(divmod, 1, 0)
