"""The global batch is the config's: the same config logs the same losses on 1 device and on 8."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxspeech.train.metrics import read_metrics

pytestmark = pytest.mark.slow

TINY = ["--config.model.d_model=16", "--config.model.num_layers=1", "--config.model.num_heads=2",
        "--config.model.subsampling_channels=4", "--config.data.max_frames=4096", "--config.data.num_buckets=1",
        "--config.train.steps=3", "--config.train.log_every=1", "--config.train.checkpoint_every=0",
        "--config.train.eval_every=0", "--config.data.num_threads=1", "--config.data.row_multiple=8"]


def _train(corpus, workdir, devices):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    done = subprocess.run([sys.executable, "-m", "jaxspeech.cli", "train", "--config", "configs/asr_ctc_tiny.py",
                           "--workdir", str(workdir), f"--config.data.dir={corpus}", *TINY],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    losses = {m["step"]: m["loss"] for m in read_metrics(workdir / "metrics.jsonl") if "loss" in m}
    return losses, json.loads((workdir / "data_stats.json").read_text())["buckets"]


def test_one_and_eight_devices_see_the_same_batches_and_losses(tiny_corpus, tmp_path):
    one, buckets_one = _train(tiny_corpus, tmp_path / "one", 1)
    eight, buckets_eight = _train(tiny_corpus, tmp_path / "eight", 8)
    assert buckets_one == buckets_eight and all(rows % 8 == 0 for rows in buckets_one[1])
    assert sorted(one) == sorted(eight) == [1, 2, 3]
    np.testing.assert_allclose([eight[s] for s in (1, 2, 3)], [one[s] for s in (1, 2, 3)], rtol=1e-5)


def test_a_mesh_that_does_not_divide_the_row_multiple_is_an_error(tiny_corpus, tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    done = subprocess.run([sys.executable, "-m", "jaxspeech.cli", "train", "--config", "configs/asr_ctc_tiny.py",
                           "--workdir", str(tmp_path), f"--config.data.dir={tiny_corpus}",
                           *TINY[:-1], "--config.data.row_multiple=4"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode != 0
    assert "data.row_multiple=4 cannot be split over 8 data-parallel devices" in done.stderr
