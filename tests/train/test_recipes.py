"""The recipe protocol: declared capabilities and options, the registry, CLI dispatch, and the
run setup every recipe shares (row multiple checked against the mesh, bucketed batches)."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from jaxspeech.cli import main
from jaxspeech.data.bucketing import make_buckets
from jaxspeech.data.pipeline import SpeechDataset
from jaxspeech.data.readers import load_records
from jaxspeech.train import recipes
from jaxspeech.train.mesh import check_row_multiple, make_mesh
from jaxspeech.train.run_setup import bucketed_batches, workdir_file

CALLS = []


def _evaluate(workdir, *, split, threshold=None):
    CALLS.append((workdir, split, threshold))
    return {"split": split, "threshold": threshold}


def _threshold(parser):
    parser.add_argument("--threshold", type=float, default=None, help="a recipe's own option")


FAKE = recipes.register(recipes.Recipe("fake_for_tests", train=lambda config, workdir: None, evaluate=_evaluate,
                                       options={"evaluate": _threshold}))


@pytest.fixture
def fake_workdir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"recipe": "fake_for_tests"}))
    return tmp_path


def test_the_cli_dispatches_on_what_a_recipe_declares(fake_workdir, capsys):
    CALLS.clear()
    assert main(["evaluate", "--workdir", str(fake_workdir), "--split", "valid", "--threshold", "0.5", "--json"]) == 0
    assert CALLS == [(str(fake_workdir), "valid", 0.5)]
    assert json.loads(capsys.readouterr().out) == {"split": "valid", "threshold": 0.5}
    assert main(["evaluate", "--workdir", str(fake_workdir)]) == 0  # an option not given is not passed
    assert CALLS[-1] == (str(fake_workdir), "test-unseen", None)
    with pytest.raises(SystemExit, match=r"recipe 'fake_for_tests' does not offer synthesize \(it offers: train, "
                                         r"evaluate\)"):
        main(["synthesize", "--workdir", str(fake_workdir), "--text", "hi", "--out", str(fake_workdir / "x.wav")])
    with pytest.raises(SystemExit, match="does not offer transcribe"):
        main(["transcribe", "--workdir", str(fake_workdir), str(fake_workdir / "config.json")])
    with pytest.raises(SystemExit):  # another recipe's option is unknown here
        main(["evaluate", "--workdir", str(fake_workdir), "--steps", "3"])
    assert "a recipe's own option" in _help(["evaluate", "--workdir", str(fake_workdir), "--help"], capsys)


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit):
        main(argv)
    return capsys.readouterr().out


def test_registry_names_the_known_recipes_and_rejects_clashes():
    with pytest.raises(recipes.RecipeError, match="unknown recipe 'nope'; known: .*ctc_asr.*tts_fm.*vocoder"):
        recipes.get("nope")
    assert recipes.get("vocoder").offers() == ("train", "evaluate")
    assert recipes.get("tts_fm").offers() == ("train", "evaluate", "synthesize")
    assert recipes.register(FAKE) is FAKE  # the same object again is fine
    with pytest.raises(recipes.RecipeError, match="already registered"):
        recipes.register(recipes.Recipe("fake_for_tests", train=lambda c, w: None))
    with pytest.raises(recipes.RecipeError, match=r"declares options for \['synthesize'\], which it does not offer"):
        recipes.Recipe("broken", train=lambda c, w: None, options={"synthesize": _threshold})
    with pytest.raises(SystemExit, match="holds no config.json"):
        main(["evaluate", "--workdir", "/nonexistent-workdir"])


def test_row_multiple_must_split_over_devices_and_accumulation():
    mesh = make_mesh({"data": -1})
    check_row_multiple(4, mesh, 2)
    with pytest.raises(ValueError, match=r"data.row_multiple=3 cannot be split over 1 data-parallel devices x 2 "
                                         r"accumulation steps: set data.row_multiple to a multiple of 2"):
        check_row_multiple(3, mesh, 2)
    with pytest.raises(ValueError, match="positive int"):
        check_row_multiple(0, mesh, 1)


def test_bucketed_batches_rows_are_the_configs_multiple(tiny_corpus):
    dataset = SpeechDataset(load_records(tiny_corpus, split="train"), preset="tts_22k", labeler=None, cache=False)
    config = ml_collections.ConfigDict(dict(seed=0, data=dict(max_frames=2048, num_buckets=3, row_multiple=4,
                                                              num_threads=1)))
    batches = bucketed_batches(config, dataset)
    assert all(size % 4 == 0 for size in batches.buckets.sizes)
    assert batches.buckets == make_buckets(dataset.lengths, max_frames=2048, num_buckets=3, row_multiple=4)
    assert next(batches)["mel"].shape[0] in batches.buckets.sizes
    assert jax.process_count() == 1


def test_workdir_files_are_built_once_and_read_back(tmp_path):
    built = []

    def build():
        built.append(1)
        return ["a", "b"]

    assert workdir_file(str(tmp_path), "speakers.json", build) == ["a", "b"]
    assert workdir_file(str(tmp_path), "speakers.json", lambda: np.zeros(1)) == ["a", "b"] and built == [1]
