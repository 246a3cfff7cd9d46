"""The UniVoice recipe on the tiny eSpeak corpus: train and resume exactly, transcribe, clone a voice from a
prompt clip (any sample rate), evaluate, and bad input named."""

import json
import shutil

import jax
import numpy as np
import pytest
import soundfile

from jaxspeech import audio
from jaxspeech.cli import main
from jaxspeech.data.readers import load_records
from jaxspeech.data.tts import speaker_of
from jaxspeech.train.metrics import read_metrics
from jaxspeech.train.recipes import univoice as recipe

from recipe_runs import losses, recipe_config

pytestmark = pytest.mark.slow

TINY = [
    "--config.model.llm.hidden_size=32", "--config.model.llm.intermediate_size=64", "--config.model.llm.num_layers=1",
    "--config.model.llm.num_heads=2", "--config.model.llm.num_kv_heads=1", "--config.model.encoder_dim=16",
    "--config.model.encoder_layers=1", "--config.model.encoder_heads=2", "--config.model.encoder_conv_kernel=3",
    "--config.model.encoder_subsampling_channels=4", "--config.model.time_sinusoid_dim=16",
    "--config.data.max_frames=2048", "--config.data.num_buckets=2", "--config.data.num_threads=1",
    "--config.train.log_every=1", "--config.train.checkpoint_every=0", "--config.train.eval_batches=1",
    "--config.train.eval_asr_utterances=2", "--config.decode.max_new_tokens=8", "--config.synth.steps=2",
    "--config.synth.griffin_lim_iterations=2", "--config.eval.asr_workdir=", "--config.eval.batch_size=4",
    "--config.decode.beam_size=0", "--config.decode.ctc_weight=0",
]


def config(corpus, steps, eval_every=0):
    return recipe_config("configs/univoice_tiny.py", corpus, steps, TINY, eval_every)


@pytest.fixture(scope="module")
def resumed(tiny_corpus, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("univoice")
    recipe.train(config(tiny_corpus, 3, eval_every=3), str(workdir))
    recipe.train(config(tiny_corpus, 5), str(workdir))  # the same workdir: resumes at step 3
    return workdir


def test_train_resumes_where_an_uninterrupted_run_would_be(resumed, tiny_corpus, tmp_path):
    straight = tmp_path / "straight"
    recipe.train(config(tiny_corpus, 5), str(straight))
    got, expected = losses(resumed), losses(straight)
    assert sorted(got) == [1, 2, 3, 4, 5] and all(np.isfinite(list(got.values())))
    np.testing.assert_allclose([got[s] for s in (4, 5)], [expected[s] for s in (4, 5)], rtol=1e-5)
    logged = read_metrics(resumed / "metrics.jsonl")
    assert all(m["asr_rows"] + m["tts_rows"] >= 1 for m in logged if "asr_rows" in m)
    evals = [m for m in logged if "eval/asr_cer" in m]
    assert evals and {"eval/flow_mse", "eval/lm_loss", "eval/token_accuracy", "eval/encoder_ctc"} <= set(evals[0])
    saved = json.loads((resumed / "config.json").read_text())
    assert saved["model"]["llm"]["vocab_size"] > 30 and saved["synth"]["frames_per_char"] > 1
    assert saved["model"]["mel_std"] > 0.5
    stats = json.loads((resumed / "data_stats.json").read_text())  # packed LLM rows (data.pack)
    assert stats["token_padding_packed"] < stats["token_padding_bucketed"] and stats["grown_batches"] == 0


def test_packing_refuses_gradient_accumulation(tiny_corpus, tmp_path):
    run = config(tiny_corpus, 1)
    run.train.accum_steps, run.data.row_multiple = 2, 2
    with pytest.raises(ValueError, match="accum_steps=1"):
        recipe.train(run, str(tmp_path / "run"))


def test_encoder_ctc_refuses_a_frozen_encoder(tiny_corpus):
    run = config(tiny_corpus, 1)
    run.model.freeze_audio_encoder = True
    with pytest.raises(ValueError, match="freeze_audio_encoder freezes"):
        recipe.make_loss_fn(run, None, blank_id=0)


def test_transcribe_and_clone_a_voice_through_the_cli(resumed, tiny_corpus, tmp_path, capsys):
    records = load_records(tiny_corpus, split="test-unseen")
    clip = records[0]["audio"]
    assert main(["transcribe", "--workdir", str(resumed), "--json", clip]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["file"] == clip
    # a prompt at 16 kHz is resampled to the model's 22.05 kHz
    waveform, rate = soundfile.read(clip)
    prompt = tmp_path / "prompt16k.wav"
    soundfile.write(prompt, audio.resample(waveform, rate, 16000), 16000)
    out = tmp_path / "cloned.wav"
    assert main(["synthesize", "--workdir", str(resumed), "--prompt-audio", str(prompt), "--prompt-text",
                 records[0]["text"], "--text", "Was the clock too shiny?", "--out", str(out)]) == 0
    cloned, cloned_rate = soundfile.read(out)
    assert cloned_rate == 22050 and cloned.size > 0.3 * cloned_rate and np.isfinite(cloned).all()


def test_evaluate_scores_both_tasks(resumed, tiny_corpus):
    speakers = [speaker_of(r) for r in load_records(tiny_corpus, split="train")]
    result = recipe.evaluate(str(resumed), split="train", limit=3)
    assert result["utterances"] == 3 and 0 <= result["asr_cer"] and 0 <= result["encoder_ctc_cer"]
    # each utterance whose speaker has another clip in the split is cloned from it
    assert result["tts_utterances"] == sum(speakers.count(s) > 1 for s in speakers[:3]) > 0
    assert len(list((resumed / "eval_train").glob("*.wav"))) == result["tts_utterances"]
    assert result["trials"] == result["tts_utterances"] and result["voices"] == len(set(speakers))
    assert -1 <= result["sim_floor"] < result["sim_ceiling"] <= 1 and 0 <= result["nearest_clone"] <= 1
    assert json.loads((resumed / "eval_train.json").read_text())["step"] == 5
    assert result["asr_decoding"] == {"beam_size": None, "ctc_weight": 0.0}  # the TINY config's greedy decoding


def test_evaluate_on_another_corpus_judges_among_its_voices(resumed, tiny_corpus, tmp_path):
    other = tmp_path / "other_corpus"
    shutil.copytree(tiny_corpus, other)
    lines = (other / "train.jsonl").read_text().splitlines()
    kept = sorted({speaker_of(json.loads(line)) for line in lines})[:2]
    (other / "train.jsonl").write_text("".join(f"{x}\n" for x in lines if speaker_of(json.loads(x)) in kept))
    result = recipe.evaluate(str(resumed), split="train", limit=3, data_dir=str(other))
    assert result["data_dir"] == str(other) and result["voices"] == 2  # the other corpus's voices, not the model's
    assert result["tts_utterances"] > 0 and json.loads((resumed / "eval_other_corpus_train.json").read_text())
    assert len(list((resumed / "eval_other_corpus_train").glob("*.wav"))) == result["tts_utterances"]


def test_joint_ctc_decoding_through_the_cli_and_its_bad_settings(resumed, tiny_corpus, capsys):
    clip = load_records(tiny_corpus, split="test-unseen")[0]["audio"]
    assert main(["transcribe", "--workdir", str(resumed), "--beam-size", "2", "--ctc-weight", "0.5", "--json",
                 clip]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["file"] == clip
    trained = recipe.read_saved_config(str(resumed))
    assert recipe.decoding(trained, beam_size=4, ctc_weight=0.5) == {"beam_size": 4, "ctc_weight": 0.5}
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        recipe.decoding(trained, ctc_weight=1.5)
    without_ctc = trained.copy_and_resolve_references()
    without_ctc.loss.ctc_weight = 0.0
    with pytest.raises(ValueError, match="not trained"):
        recipe.decoding(without_ctc, ctc_weight=0.5)


def test_training_refuses_ctc_decoding_and_upsampling_without_the_encoders_ctc(tiny_corpus, tmp_path):
    run = config(tiny_corpus, 1)
    run.loss.ctc_weight, run.decode.ctc_weight, run.model.ctc_upsample = 0.0, 0.5, 1
    with pytest.raises(ValueError, match="decode.ctc_weight"):
        recipe.train(run, str(tmp_path / "run"))
    run.decode.ctc_weight, run.model.ctc_upsample = 0.0, 2
    with pytest.raises(ValueError, match="model.ctc_upsample"):  # parameters nothing would train
        recipe.train(run, str(tmp_path / "run"))


def test_bad_prompts_and_texts_are_named(resumed, tiny_corpus, tmp_path):
    clip = load_records(tiny_corpus, split="valid")[0]
    text = "Was the clock too shiny?"
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(2000), 22050)
    cases = [
        (dict(prompt_audio=str(short), prompt_text="a cat"), "at least 0.5 s"),
        (dict(prompt_audio=clip["audio"]), "both its audio and its text"),
        (dict(prompt_audio=clip["audio"], prompt_text="?!"), "no words"),
    ]
    for options, match in cases:
        with pytest.raises(ValueError, match=match):
            recipe.synthesize(str(resumed), [text], **options)
    with pytest.raises(ValueError, match="no words"):
        recipe.synthesize(str(resumed), ["  "])
    with pytest.raises(SystemExit, match="more than this model's"):
        main(["synthesize", "--workdir", str(resumed), "--text", "a cat " * 400, "--out", str(tmp_path / "x.wav")])


def test_flow_omni_trains_resumes_and_clones_with_the_same_commands(tiny_corpus, tmp_path):
    overrides = [*TINY, "--config.model.flow_head_width=16", "--config.model.flow_head_blocks=1",
                 "--config.synth.head_steps=2", "--config.synth.max_frames=400"]
    run = lambda steps, eval_every=0: recipe_config("configs/flow_omni_tiny.py", tiny_corpus, steps, overrides,  # noqa: E731
                                                    eval_every)
    recipe.train(run(2, eval_every=2), str(tmp_path / "a"))
    recipe.train(run(3), str(tmp_path / "a"))
    recipe.train(run(3), str(tmp_path / "b"))
    np.testing.assert_allclose(losses(tmp_path / "a")[3], losses(tmp_path / "b")[3], rtol=1e-5)
    assert any("eval/asr_cer" in m for m in read_metrics(tmp_path / "a" / "metrics.jsonl"))
    clip = load_records(tiny_corpus, split="valid")[0]
    waves, rate = recipe.synthesize(str(tmp_path / "a"), ["Was the clock too shiny?"], prompt_audio=clip["audio"],
                                    prompt_text=clip["text"])  # fmt: skip
    assert rate == 22050 and waves[0].size > 0 and np.isfinite(waves[0]).all()


def test_the_llm_starts_from_a_transformers_checkpoint_with_its_tokenizer(tiny_corpus, tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch
    from tokenizers import Tokenizer as Fast, decoders, models, pre_tokenizers, trainers

    from jaxspeech.models import llm

    texts = [r["text"] for r in load_records(tiny_corpus, split="train")]
    bpe = Fast(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([t.lower() for t in texts], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    reference = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True, eos_token_id=0, bos_token_id=0))
    reference.save_pretrained(tmp_path / "smol")
    tokenizer.save_pretrained(tmp_path / "smol")
    workdir = tmp_path / "run"
    run = recipe_config("configs/univoice_tiny.py", tiny_corpus, 1,
                        [*TINY, f"--config.init.llm_checkpoint={tmp_path / 'smol'}"])
    recipe.train(run, str(workdir))  # one step at the warmup's zero learning rate: the params stay imported
    saved = json.loads((workdir / "config.json").read_text())["model"]["llm"]
    assert (saved["hidden_size"], saved["num_layers"], saved["vocab_size"]) == (48, 1, len(tokenizer) + 2)
    speech, _, step = recipe.load_speech(str(workdir))
    table = np.asarray(speech.params["llm"]["embed_tokens"]["embedding"][...])
    _, _, imported = llm.import_transformers_checkpoint(tmp_path / "smol")
    np.testing.assert_array_equal(table[: len(tokenizer)], imported["embed_tokens"]["embedding"][...])
    assert step == 1 and (workdir / "tokenizer").is_dir() and not (workdir / "vocab.json").exists()
    [text] = speech.transcribe([audio.load_audio(load_records(tiny_corpus, split="valid")[0]["audio"],
                                                 sample_rate=22050)])  # fmt: skip
    assert isinstance(text, str)


def test_a_frozen_whisper_encoder_from_a_checkpoint_reads_its_30_s_window(tiny_corpus, tmp_path):
    pytest.importorskip("transformers")
    from tests.whisper_tiny_checkpoint import build_checkpoint

    from jaxspeech.models import whisper

    checkpoint = build_checkpoint(tmp_path / "whisper")
    workdir = tmp_path / "run"
    overrides = [*TINY, "--config.model.audio_encoder=whisper", f"--config.model.whisper_checkpoint={checkpoint}",
                 "--config.model.freeze_audio_encoder=true", "--config.loss.ctc_weight=0", "--config.model.pool=25",
                 "--config.model.ctc_upsample=1", "--config.optim.warmup_steps=0", "--config.train.eval_asr_utterances=1"]  # fmt: skip
    recipe.train(recipe_config("configs/univoice_tiny.py", tiny_corpus, 2, overrides, eval_every=2), str(workdir))
    speech, config, step = recipe.load_speech(str(workdir))
    assert step == 2 and speech.config.whisper.d_model == 32
    _, _, imported = whisper.import_transformers_checkpoint(checkpoint)
    trained = speech.params["audio_encoder"]
    for (path, ours), (_, theirs) in zip(jax.tree_util.tree_leaves_with_path(trained),
                                         jax.tree_util.tree_leaves_with_path(imported["encoder"]), strict=True):
        np.testing.assert_array_equal(ours, theirs, err_msg=str(path))  # frozen: not even weight decay moved it
    assert any(m.get("asr_rows", 0) > 0 for m in read_metrics(workdir / "metrics.jsonl"))
    clip = load_records(tiny_corpus, split="valid")[0]
    features, lengths = speech.asr_features([audio.load_audio(clip["audio"], sample_rate=22050)])
    assert features.shape == (1, 3000, 80) and lengths.tolist() == [3000]
    assert isinstance(speech.transcribe([audio.load_audio(clip["audio"], sample_rate=22050)])[0], str)
    with pytest.raises(ValueError, match="30 s"):
        speech.asr_features([np.zeros(31 * 22050, np.float32)])


def test_the_paper_scale_config_names_its_checkpoints_and_shards_the_llm():
    from jaxspeech.train.config import load_config

    config = load_config("configs/univoice_360m.py", ["--config.mesh.fsdp=8"])
    assert config.model.audio_encoder == "whisper" and config.model.freeze_audio_encoder
    assert config.init.llm_checkpoint.endswith("SmolLM2-360M") and "whisper" in config.model.whisper_checkpoint
    assert config.train.compute_dtype == "bfloat16" and config.model.pool == 6 and config.mesh.fsdp == 8
    model = config.model.copy_and_resolve_references()
    # the Whisper architecture and the vocabulary are only known once the checkpoints are read
    model.audio_encoder, model.llm.vocab_size = "conformer", 49152
    model = recipe.model_config(model)  # the other fields agree with each other (UniVoiceConfig checks them)
    assert not model.frame_text and model.frame_text_blocks == 0
    with pytest.raises(FileNotFoundError, match="not found"):  # no hub here: the directories must exist
        recipe._pretrained_llm(config, 49154)
