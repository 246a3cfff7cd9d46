"""The TTS recipe with a teacher and its students: an EDM teacher, a CoMoSpeech (CD) student and a CTM
student trained from its workdir, synthesized and evaluated through the CLI with the students' one-step
default; the teacher checks a student's config gets."""

import json

import numpy as np
import pytest
import soundfile

from jaxspeech.cli import main
from jaxspeech.train.config import ConfigError
from jaxspeech.train.metrics import read_metrics
from jaxspeech.train.recipes import tts_fm as recipe

from recipe_runs import recipe_config
from test_tts_recipe import QUESTION, TINY

pytestmark = pytest.mark.slow


def config(name, corpus, steps, teacher=None, extra=()):
    overrides = [*TINY, *extra]
    if teacher is not None:  # a student keeps its sampler's defaults (one step)
        overrides = [o for o in overrides if not o.startswith("--config.synth.sampler.")]
        objective = {"tts_comospeech_tiny.py": "cd", "tts_ctm_tiny.py": "ctm", "tts_ect_tiny.py": "ect"}[name]
        overrides.append(f"--config.model.decoder.{objective}.teacher_workdir={teacher}")
    return recipe_config(f"configs/{name}", corpus, steps, overrides)


@pytest.fixture(scope="module")
def teacher(tiny_corpus, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("edm")
    recipe.train(config("tts_edm_tiny.py", tiny_corpus, 2), str(workdir))
    return workdir


@pytest.fixture(scope="module")
def student(teacher, tiny_corpus, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cd")
    recipe.train(config("tts_comospeech_tiny.py", tiny_corpus, 2, teacher, ["--config.train.eval_every=2"]),
                 str(workdir))
    return workdir


def test_a_student_starts_from_its_teacher_and_keeps_its_vocabulary(teacher, student):
    for name in ("vocab.json", "speakers.json"):
        assert (student / name).read_text() == (teacher / name).read_text()
    saved, teacher_saved = (json.loads((w / "config.json").read_text())["model"] for w in (student, teacher))
    assert saved["mel_mean"] == teacher_saved["mel_mean"] and saved["decoder"]["objective"] == "cd"
    metrics = read_metrics(student / "metrics.jsonl")
    assert any("cd_loss" in m for m in metrics) and any("eval/cd_loss" in m for m in metrics)


def test_students_synthesize_in_one_step_by_default(student, tmp_path, capsys):
    out = tmp_path / "one.wav"
    assert main(["synthesize", "--workdir", str(student), "--text", QUESTION, "--out", str(out)]) == 0
    waveform, _ = soundfile.read(out)
    assert np.abs(waveform).max() > 0
    capsys.readouterr()
    assert main(["evaluate", "--workdir", str(student), "--split", "test-seen", "--json", "--limit", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["objective"] == "cd" and result["nfe"] == 1 and result["sampler"]["steps"] == 1
    assert 0 < result["acoustic_rtf"] < result["rtf"]


def test_ctm_student_reads_two_levels_and_samples_with_gamma(teacher, tiny_corpus, tmp_path, capsys):
    workdir = tmp_path / "ctm"
    recipe.train(config("tts_ctm_tiny.py", tiny_corpus, 1, teacher), str(workdir))
    assert main(["evaluate", "--workdir", str(workdir), "--split", "test-seen", "--json", "--limit", "1",
                 "--steps", "2", "--sampler", "gamma=1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sampler"] == {"gamma": 1, "sigmas": [], "steps": 2, "temperature": 1.0} and result["nfe"] == 2
    with pytest.raises(SystemExit, match="takes NAME=VALUE"):
        main(["evaluate", "--workdir", str(workdir), "--split", "test-seen", "--sampler", "gamma"])
    with pytest.raises(SystemExit, match=r"gamma must be in \[0, 1\]"):
        main(["synthesize", "--workdir", str(workdir), "--text", QUESTION, "--out", str(tmp_path / "x.wav"),
              "--sampler", "gamma=2"])


def test_a_student_needs_a_trained_teacher_of_the_right_objective(teacher, student, tiny_corpus, tmp_path):
    with pytest.raises(ConfigError, match="set --config.model.decoder.cd.teacher_workdir"):
        recipe.train(config("tts_comospeech_tiny.py", tiny_corpus, 1, "", []), str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="holds no trained run"):
        recipe.train(config("tts_comospeech_tiny.py", tiny_corpus, 1, tmp_path / "nowhere"), str(tmp_path / "b"))
    with pytest.raises(ConfigError, match="was trained with the cd objective; the cd objective needs a edm teacher"):
        recipe.train(config("tts_comospeech_tiny.py", tiny_corpus, 1, student), str(tmp_path / "c"))
    with pytest.raises(ConfigError, match=r"differs from its teacher's .* in \['encoder'\]"):
        recipe.train(config("tts_comospeech_tiny.py", tiny_corpus, 1, teacher,
                            ["--config.model.encoder.d_model=32"]), str(tmp_path / "d"))
    with pytest.raises(ConfigError, match="has sigma_data=1.0, the student cd.sigma_data=0.5"):
        recipe.train(config("tts_comospeech_tiny.py", tiny_corpus, 1, teacher,
                            ["--config.model.decoder.cd.sigma_data=0.5"]), str(tmp_path / "e"))
