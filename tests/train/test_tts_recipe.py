"""The flow-matching TTS recipe on the tiny eSpeak corpus: train, resume, synthesize, evaluate, bad input."""

import json
import os

import jax
import numpy as np
import pytest
import soundfile

from jaxspeech.cli import main
from jaxspeech.models.tts.synthesizer import SynthesisItem, Synthesizer
from jaxspeech.models.tts.vocoders import HARMONIC, builtin_vocoder
from jaxspeech.text import UnknownSymbolError
from jaxspeech.train.metrics import read_metrics
from jaxspeech.train.recipes import tts_fm as recipe

from recipe_runs import losses, recipe_config

pytestmark = pytest.mark.slow

TINY = [
    "--config.model.encoder.d_model=16", "--config.model.encoder.num_layers=1", "--config.model.encoder.ff_mult=2",
    "--config.model.encoder.prenet_layers=1", "--config.model.encoder.prenet_kernel=3",
    "--config.model.duration_predictor.channels=16", "--config.model.intonation.num_tokens=3",
    "--config.model.intonation.contour_points=8", "--config.model.intonation.lstm_hidden=8",
    "--config.model.intonation.attention_dim=8", "--config.model.intonation.num_heads=2",
    "--config.model.pitch.channels=8", "--config.model.pitch.layers=1", "--config.model.pitch.kernel=3",
    "--config.model.decoder.speaker_dim=4", "--config.model.decoder.unet.channels=(8, 8)",
    "--config.model.decoder.unet.time_dim=16", "--config.model.decoder.unet.num_blocks=0",
    "--config.model.decoder.unet.norm_groups=4", "--config.model.decoder.segment_frames=16",
    "--config.data.max_frames=2048", "--config.data.num_buckets=2", "--config.data.max_boundaries=2",
    "--config.data.num_threads=1", "--config.train.log_every=1", "--config.train.checkpoint_every=0",
    "--config.train.eval_batches=1", "--config.synth.sampler.steps=2", "--config.synth.griffin_lim.iterations=2",
    "--config.synth.max_symbols=40", "--config.eval.asr_workdir=", "--config.eval.rtf_utterances=1",
    "--config.eval.rtf_repeats=1",
]
QUESTION = "Was the clock too shiny?"


def config(corpus, steps, eval_every=0):
    return recipe_config("configs/tts_fm_tiny.py", corpus, steps, TINY, eval_every)


@pytest.fixture(scope="module")
def resumed(tiny_corpus, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tts")
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
    evals = [m for m in read_metrics(resumed / "metrics.jsonl") if "eval/flow_mse" in m]
    assert [m["step"] for m in evals] == [3]
    assert {"config.json", "vocab.json", "speakers.json", "checkpoints", "data_stats.json",
            "tensorboard"} <= set(os.listdir(resumed))
    saved = json.loads((resumed / "config.json").read_text())["model"]
    vocab = json.loads((resumed / "vocab.json").read_text())["symbols"]
    assert saved["vocab_size"] == len(vocab) and vocab[saved["break_token"]] == "|"
    assert saved["num_speakers"] == len(json.loads((resumed / "speakers.json").read_text()))
    assert saved["mel_std"] > 0


def test_synthesize_text_and_text_file(resumed, tmp_path, capsys):
    out = tmp_path / "one.wav"
    assert main(["synthesize", "--workdir", str(resumed), "--text", QUESTION, "--out", str(out), "--steps", "3",
                 "--speaker", "1"]) == 0
    line = json.loads(capsys.readouterr().out)
    waveform, rate = soundfile.read(out)
    assert rate == 22050 and line["out"] == str(out) and len(waveform) == pytest.approx(line["seconds"] * rate, abs=rate / 1000)
    assert len(waveform) % 256 == 0 and np.abs(waveform).max() > 0
    texts = tmp_path / "texts.txt"
    texts.write_text(f"{QUESTION}\n\nJulia, please buy those happy dolls.\n")
    assert main(["synthesize", "--workdir", str(resumed), "--text-file", str(texts), "--out-dir",
                 str(tmp_path / "many"), "--vocoder", "harmonic"]) == 0
    assert sorted(os.listdir(tmp_path / "many")) == ["0000.wav", "0001.wav"]


def test_synthesize_through_a_pytorch_hifigan_file(resumed, tiny_corpus, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    matcha_models = pytest.importorskip("matcha.hifigan.models")
    small = dict(resblock="2", upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8), upsample_initial_channel=16,
                 resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 2),))  # fmt: skip
    torch.manual_seed(0)
    torch.save({"generator": matcha_models.Generator(type("H", (), small)).state_dict()}, tmp_path / "generator")
    (tmp_path / "config.json").write_text(json.dumps(small))
    out = tmp_path / "hifigan.wav"
    run = ["synthesize", "--text", QUESTION, "--out", str(out), "--vocoder", str(tmp_path / "generator")]
    # Matcha's HiFi-GAN reads HiFi-GAN's 80 mels: the tiny config's 128-filter model is refused, by name.
    with pytest.raises(SystemExit, match="reads 80 mels and upsamples by 256; preset 'tts_22k_128' has 128 mels"):
        main(run + ["--workdir", str(resumed)])
    eighty = tmp_path / "tts_22k"
    recipe.train(recipe_config("configs/tts_fm_tiny.py", tiny_corpus, 1, TINY + ["--config.data.preset=tts_22k"]),
                 str(eighty))
    capsys.readouterr()
    assert main(run + ["--workdir", str(eighty)]) == 0
    waveform, rate = soundfile.read(out)
    seconds = json.loads(capsys.readouterr().out)["seconds"]
    assert rate == 22050 and len(waveform) == pytest.approx(seconds * rate, abs=rate / 1000)
    assert np.abs(waveform).max() > 0


def test_long_text_is_cut_at_phrase_boundaries_and_joined(resumed):
    synthesizer, params, _ = recipe.load_synthesizer(str(resumed))
    text = "Julia, please buy those happy dolls. Was the clock too shiny? To be honest, Iris will drop it."
    item = synthesizer.item(text)
    assert len(item.pieces) > 1 and all(len(p) <= 60 for p in item.pieces)
    pieces = [SynthesisItem([piece], 0) for piece in item.pieces]
    key = jax.random.key(0)
    [(mel, waveform)] = synthesizer.synthesize(params, [item], key=key)
    separately = synthesizer.synthesize(params, pieces, key=key)
    assert mel.shape[0] == sum(m.shape[0] for m, _ in separately)
    assert waveform.shape[0] == mel.shape[0] * 256


def test_intonation_tokens_steer_synthesis_and_are_checked(resumed):
    synthesizer, params, _ = recipe.load_synthesizer(str(resumed))
    key = jax.random.key(0)
    mels = [synthesizer.synthesize(params, [synthesizer.item(QUESTION, intonation=[k])], key=key)[0][0]
            for k in (0, 1)]
    frames = min(len(m) for m in mels)
    assert not np.allclose(mels[0][:frames], mels[1][:frames])
    with pytest.raises(ValueError, match=r"intonation tokens must be in \[0, 3\)"):
        synthesizer.synthesize(params, [synthesizer.item(QUESTION, intonation=[3])], key=key)
    with pytest.raises(ValueError, match="2 intonation tokens given for 1 phrase boundaries"):
        synthesizer.synthesize(params, [synthesizer.item(QUESTION, intonation=[0, 1])], key=key)


def test_harmonic_vocoder_refinement_reaches_the_waveform_only(resumed):
    synthesizer, params, _ = recipe.load_synthesizer(str(resumed), HARMONIC)
    key = jax.random.key(0)
    (mel, plain), = synthesizer.synthesize(params, [synthesizer.item(QUESTION)], key=key)
    waveforms = [plain]
    for below_hz, refine_unvoiced in [(0.0, False), (1000.0, False), (1000.0, True)]:
        refined_config = synthesizer.config.copy_and_resolve_references()
        refined_config.synth.harmonic.update(dict(griffin_lim_iterations=2, below_hz=below_hz,
                                                  refine_unvoiced=refine_unvoiced))
        refined = Synthesizer(refined_config, synthesizer.tokenizer, synthesizer.speakers, synthesizer.graphdef,
                              builtin_vocoder(HARMONIC, refined_config))
        (same_mel, waveform), = refined.synthesize(params, [refined.item(QUESTION)], key=key)
        np.testing.assert_array_equal(same_mel, mel)
        assert waveform.shape == plain.shape and np.all(np.isfinite(waveform))
        assert not any(np.allclose(waveform, other) for other in waveforms)
        waveforms.append(waveform)
    # Only a vocoder that reads the F0 makes synthesis run the pitch predictor; the mel is the same.
    griffin_lim, _, _ = recipe.load_synthesizer(str(resumed))
    item = synthesizer.item(QUESTION)
    _, with_pitch = synthesizer.generate(params, [item], key=key)
    _, without = griffin_lim.generate(params, [item], key=key)
    assert with_pitch.f0 is not None and without.f0 is None and without.voiced is None
    np.testing.assert_array_equal(without.mel, with_pitch.mel)


def test_bad_input_gets_clear_errors(resumed, tmp_path):
    run = ["synthesize", "--workdir", str(resumed), "--out", str(tmp_path / "x.wav")]
    for args, message in [(["--text", "   "], "empty text"),
                          (["--text", QUESTION, "--speaker", "nobody"], "unknown speaker 'nobody'"),
                          (["--text", QUESTION, "--steps", "0"], r"steps must be an integer in \[1, 1000\]"),
                          (["--text", QUESTION, "--steps", "100000"], "steps must be"),
                          (["--text", QUESTION, "--cfg", "-1"], "guidance scale must be in"),
                          (["--text", QUESTION, "--cfg", "nan"], "guidance scale must be in"),
                          (["--text", QUESTION, "--intonation", "up"], "--intonation takes token indices")]:
        with pytest.raises(SystemExit, match=message):
            main(run + args)
    synthesizer, _, _ = recipe.load_synthesizer(str(resumed))
    with pytest.raises(UnknownSymbolError, match="ʘ"):
        synthesizer.rows([SynthesisItem(["ʘa"], 0)])
    no_pitch = synthesizer.config.copy_and_resolve_references()
    no_pitch.model.pitch.enabled = False
    with pytest.raises(ValueError, match="harmonic vocoder needs the model's F0"):
        builtin_vocoder(HARMONIC, no_pitch)
    with pytest.raises(SystemExit, match="unknown vocoder 'wavenet'; known: griffin-lim, harmonic"):
        main(run + ["--text", QUESTION, "--vocoder", "wavenet"])
    with pytest.raises(SystemExit, match="speakers the model was not trained on"):
        main(["evaluate", "--workdir", str(resumed), "--split", "test-unseen"])


def test_evaluate_prints_quality_speed_and_prosody(resumed, capsys):
    assert main(["evaluate", "--workdir", str(resumed), "--split", "test-seen", "--json", "--limit", "2",
                 "--steps", "2", "--vocoder", "harmonic"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"mcd_db", "asr_cer", "rtf", "comma_pause_mae_s", "contour_accuracy",
            "contour_agreement_with_reference"} <= set(result)
    assert result["utterances"] == 2 and result["nfe"] == 2 and result["step"] == 5
    assert result["mcd_db"] > 0 and result["rtf"] > 0 and result["asr_cer"] is None  # no recognizer configured
    assert result["objective"] == "flow_matching" and result["sampler"]["steps"] == 2
    # The model's own mel through Griffin-Lim, beside the harmonic vocoder's rendering of the same mel.
    own = result["griffin_lim_on_model_mel"]
    assert {"mcd_db", "asr_cer", "contour_accuracy"} <= set(own) and own["mcd_db"] != result["mcd_db"]
    # The contour read off the model's mel itself, no vocoder: judged on the same utterances.
    read_from_mel = result["contour_read_from_model_mel"]
    assert [read_from_mel[k] for k in ("questions", "statements")] == [result[k] for k in ("questions", "statements")]
    wavs = sorted(os.listdir(resumed / "eval_test-seen"))
    assert len(wavs) == 3 and wavs[0] == "griffin_lim_on_model_mel"
    assert sorted(os.listdir(resumed / "eval_test-seen" / "griffin_lim_on_model_mel")) == wavs[1:]
    assert json.loads((resumed / "eval_test-seen.json").read_text()) == result


def test_audio_synthesized_without_scoring_scores_as_evaluate_does(resumed, tmp_path):
    """A GPU machine synthesizes and times (score=False: no recordings read); another scores the audio."""
    options = dict(split="test-seen", limit=2, steps=2, vocoder="harmonic")
    scored = recipe.evaluate(str(resumed), **options)
    timed = recipe.evaluate(str(resumed), **options, score=False)
    assert "mcd_db" not in timed and timed["rtf"] > 0 and timed["acoustic_rtf"] > 0 and timed["utterances"] == 2
    audio_dir = tmp_path / "from_gpu"
    os.rename(resumed / "eval_test-seen", audio_dir)
    later = recipe.score_audio(str(resumed), str(audio_dir), split="test-seen")
    assert later["utterances"] == 2 and later["asr_cer"] is None  # no recognizer configured
    # evaluate scores the audio as written too: the same files give the same figures.
    figures = set(later) - {"split", "utterances", "asr_workdir"}
    assert {"mcd_db", "contour_accuracy", "griffin_lim_on_model_mel"} <= figures
    assert {k: later[k] for k in figures} == {k: scored[k] for k in figures}
    first = sorted(os.listdir(audio_dir / "griffin_lim_on_model_mel"))[0]
    os.remove(audio_dir / "griffin_lim_on_model_mel" / first)
    with pytest.raises(FileNotFoundError, match="1 records have no synthesized audio"):
        recipe.score_audio(str(resumed), str(audio_dir), split="test-seen")
    with pytest.raises(ValueError, match="no audio of split 'test-seen'"):
        recipe.score_audio(str(resumed), str(tmp_path), split="test-seen")
