"""End-to-end: the `jaxspeech` commands on the tiny corpus, including SIGKILL + resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from jaxspeech.train.metrics import read_metrics

pytestmark = pytest.mark.slow

TINY = ["--config.model.d_model=32", "--config.model.num_layers=1", "--config.model.num_heads=2",
        "--config.model.subsampling_channels=4", "--config.data.max_frames=2048", "--config.data.num_buckets=2",
        "--config.train.steps=6", "--config.train.log_every=1", "--config.train.checkpoint_every=3",
        "--config.train.eval_every=0", "--config.data.num_threads=1"]


def jaxspeech(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "jaxspeech.cli", *args], capture_output=True, text=True,
                          timeout=300, **kwargs)


def train_command(corpus, workdir):
    return [sys.executable, "-m", "jaxspeech.cli", "train", "--config", "configs/asr_ctc_tiny.py",
            "--workdir", str(workdir), f"--config.data.dir={corpus}", *TINY]


def losses(workdir):
    return {m["step"]: m["loss"] for m in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "loss" in m}


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    done = subprocess.run(train_command(tiny_corpus, workdir), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def test_train_writes_a_complete_workdir(trained):
    names = set(os.listdir(trained))
    assert {"config.json", "vocab.json", "checkpoints", "metrics.jsonl", "data_stats.json", "tensorboard"} <= names
    assert sorted(losses(trained)) == [1, 2, 3, 4, 5, 6]
    stats = json.loads((trained / "data_stats.json").read_text())
    assert 0 <= stats["padding_bucketed"] < 1


def test_evaluate_prints_one_json_object(trained):
    done = jaxspeech("evaluate", "--workdir", str(trained), "--split", "test-unseen", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert {"cer", "wer", "utterances", "rtf"} <= set(result) and result["utterances"] > 0 and result["step"] == 6


def test_transcribe_one_line_per_file_and_names_missing_files(trained, tiny_corpus):
    wavs = sorted((tiny_corpus / "wavs").glob("*.wav"))[:2]
    done = jaxspeech("transcribe", "--workdir", str(trained), "--json", *map(str, wavs))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == list(map(str, wavs))
    missing = jaxspeech("transcribe", "--workdir", str(trained), "nope.wav")
    assert missing.returncode != 0 and "nope.wav" in missing.stderr


def test_unknown_config_key_fails_clearly(tiny_corpus, tmp_path):
    done = jaxspeech("train", "--config", "configs/asr_ctc_tiny.py", "--workdir", str(tmp_path),
                     "--config.optim.learning_rate=1")
    assert done.returncode != 0 and "unknown config key 'optim.learning_rate'" in done.stderr


def test_sigkilled_run_resumes_with_identical_losses(trained, tiny_corpus, tmp_path):
    workdir = tmp_path / "killed"
    process = subprocess.Popen(train_command(tiny_corpus, workdir), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (workdir / "checkpoints" / "3").is_dir():
        assert process.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = subprocess.run(train_command(tiny_corpus, workdir), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming at step" in done.stderr
    assert losses(workdir) == losses(trained)
