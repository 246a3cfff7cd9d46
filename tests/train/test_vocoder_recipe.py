"""The vocoder recipe on the tiny eSpeak corpus, without and with discriminators: train 3 steps, resume
to 5 (the same losses as 5 straight steps), evaluate, vocode."""

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


# configs/vocoder_gan_tiny.py's objective at test size: HiFi-GAN's losses against a narrow MPD.
ADVERSARIAL = ["--config.model.adversarial.discriminators=('mpd',)", "--config.model.adversarial.channel_divisor=32",
               "--config.model.loss.stft_weight=0.0", "--config.model.loss.mel_weight=45.0"]


def config(corpus, steps, eval_every=0, adversarial=False):
    return recipe_config("configs/vocoder_istft_tiny.py", corpus, steps, TINY + ADVERSARIAL * adversarial, eval_every)


@pytest.fixture(scope="module", params=[False, True], ids=["reconstruction", "adversarial"])
def resumed(request, tiny_corpus, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vocoder")
    recipe.train(config(tiny_corpus, 3, eval_every=3, adversarial=request.param), str(workdir))
    assert sorted(losses(workdir)) == [1, 2, 3]
    recipe.train(config(tiny_corpus, 5, adversarial=request.param), str(workdir))  # the same workdir: resumes at 3
    return workdir, request.param


def test_train_resumes_where_an_uninterrupted_run_would_be(resumed, tiny_corpus, tmp_path):
    resumed, adversarial = resumed
    straight = tmp_path / "straight"
    recipe.train(config(tiny_corpus, 5, adversarial=adversarial), str(straight))
    got, expected = losses(resumed), losses(straight)
    assert sorted(got) == [1, 2, 3, 4, 5] and all(np.isfinite(list(got.values())))
    np.testing.assert_allclose([got[s] for s in (4, 5)], [expected[s] for s in (4, 5)], rtol=1e-5)
    evals = [m for m in read_metrics(resumed / "metrics.jsonl") if "eval/vocoder_loss" in m]
    assert [m["step"] for m in evals] == [3]
    assert {"config.json", "checkpoints", "data_stats.json", "tensorboard"} <= set(os.listdir(resumed))
    if adversarial:  # both networks resumed: the discriminator's losses continue exactly too
        logged = {m["step"]: m for m in read_metrics(resumed / "metrics.jsonl") if "loss" in m}
        alone = {m["step"]: m for m in read_metrics(straight / "metrics.jsonl") if "loss" in m}
        for name in ("discriminator/loss", "generator/adversarial", "generator/feature_matching"):
            np.testing.assert_allclose([logged[s][name] for s in (4, 5)], [alone[s][name] for s in (4, 5)], rtol=1e-5)


def test_evaluate_and_vocode_from_the_workdir(resumed):
    resumed, _ = resumed
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


def test_a_source_filter_vocoder_on_128_filter_mels_trains_evaluates_and_vocodes(tiny_corpus, tmp_path):
    # The preset decides the mel bins (n_mels follows it); the source reads the pitch off the mel.
    workdir = tmp_path / "source"
    overrides = ["--config.model.preset=tts_22k_128", "--config.model.source=mel_f0"]
    recipe.train(recipe_config("configs/vocoder_istft_tiny.py", tiny_corpus, 2, TINY + overrides, 0), str(workdir))
    saved = json.loads((workdir / "config.json").read_text())["model"]
    assert (saved["n_mels"], saved["source"]) == (128, "mel_f0")
    result = recipe.evaluate(str(workdir), split="test-seen")
    assert result["step"] == 2 and np.isfinite(result["mcd_db"])
    audio = recipe.vocode(str(workdir))(np.random.default_rng(0).normal(size=(40, 128)).astype(np.float32) - 5.0)
    assert audio.shape == (40 * 256,) and np.all(np.isfinite(audio))
