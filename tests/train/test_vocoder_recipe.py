"""The vocoder recipe on the tiny eSpeak corpus: train 3 steps, resume to 5, evaluate, vocode."""

import json
import os

import numpy as np
import pytest

from jaxspeech.train.metrics import read_metrics
from jaxspeech.train.recipes import vocoder as recipe

from recipe_runs import losses, recipe_config

pytestmark = pytest.mark.slow

TINY = ["--config.model.dim=16", "--config.model.intermediate_dim=32", "--config.model.num_layers=1",
        "--config.model.loss.resolutions=((512, 128, 512), (1024, 256, 1024))", "--config.data.segment_frames=8",
        "--config.data.batch_size=2", "--config.data.num_threads=1", "--config.train.log_every=1",
        "--config.train.checkpoint_every=0", "--config.train.eval_batches=1", "--config.data.eval_max_frames=2048"]


def config(corpus, steps, eval_every=0):
    return recipe_config("configs/vocoder_istft_tiny.py", corpus, steps, TINY, eval_every)


@pytest.fixture(scope="module")
def resumed(tiny_corpus, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vocoder")
    recipe.train(config(tiny_corpus, 3, eval_every=3), str(workdir))
    assert sorted(losses(workdir)) == [1, 2, 3]
    recipe.train(config(tiny_corpus, 5), str(workdir))  # the same workdir: resumes at step 3
    return workdir


def test_train_resumes_where_an_uninterrupted_run_would_be(resumed, tiny_corpus, tmp_path):
    straight = tmp_path / "straight"
    recipe.train(config(tiny_corpus, 5), str(straight))
    got, expected = losses(resumed), losses(straight)
    assert sorted(got) == [1, 2, 3, 4, 5] and all(np.isfinite(list(got.values())))
    np.testing.assert_allclose([got[s] for s in (4, 5)], [expected[s] for s in (4, 5)], rtol=1e-5)
    evals = [m for m in read_metrics(resumed / "metrics.jsonl") if "eval/vocoder_loss" in m]
    assert [m["step"] for m in evals] == [3]
    assert {"config.json", "checkpoints", "data_stats.json", "tensorboard"} <= set(os.listdir(resumed))


def test_evaluate_and_vocode_from_the_workdir(resumed):
    result = recipe.evaluate(str(resumed), split="test-seen")
    assert result["step"] == 5 and result["utterances"] > 0
    assert all(np.isfinite(result[k]) and result[k] > 0 for k in ("mcd_db", "mel_l1", "rtf"))
    assert json.loads((resumed / "eval_test-seen.json").read_text()) == result
    fn = recipe.vocode(str(resumed))
    mel = np.random.default_rng(0).normal(size=(2, 70, 80)).astype(np.float32) - 5.0
    mask = np.arange(70)[None] < np.array([[70], [30]])
    audio = fn(mel, mask)
    assert audio.shape == (2, 70 * 256) and not audio[1, 30 * 256:].any()
    np.testing.assert_allclose(fn(mel[1, :30]), audio[1, : 30 * 256], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="mel must be"):
        fn(mel[..., :40])
