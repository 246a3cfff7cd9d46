"""End-to-end runs of tests/train/toy_training.py in subprocesses: exact resumption after
SIGKILL, 8 simulated devices, and 2 processes with gloo collectives, each against one
uninterrupted single-device run."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxspeech.train import read_metrics

SCRIPT = Path(__file__).with_name("toy_training.py")
TIMEOUT_S = 150
NUM_STEPS, CHECKPOINT_EVERY = 12, 3


def command(workdir, mesh="data=-1,fsdp=1", *extra):
    return [sys.executable, str(SCRIPT), "--workdir", str(workdir), "--num-steps", str(NUM_STEPS),
            "--checkpoint-every", str(CHECKPOINT_EVERY), "--mesh", mesh, *extra]


def environment(devices):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    return env


def run(argv, devices=1):
    """Runs to completion (or fails after TIMEOUT_S instead of hanging); returns the process."""
    try:
        return subprocess.run(argv, env=environment(devices), capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{argv} did not finish in {TIMEOUT_S}s:\n{error.stderr}")


def completed(argv, devices=1):
    result = run(argv, devices)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def losses(workdir):
    records = read_metrics(Path(workdir) / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, NUM_STEPS + 1))
    return np.array([r["loss"] for r in records])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Losses of an uninterrupted single-device run."""
    workdir = tmp_path_factory.mktemp("reference")
    completed(command(workdir))
    return losses(workdir)


def test_sigkill_then_same_command_resumes_exactly(tmp_path, reference):
    argv = command(tmp_path)
    (tmp_path / "KILL_AT_STEP").write_text("8")  # the script SIGKILLs itself after step 8
    killed = run(argv)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    finished = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert finished and finished[-1] in (3, 6), finished  # 6 may still have been in flight

    completed(argv)
    lines = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines.count(1) == 1 and lines.count(8) == 2  # resumed from a checkpoint, not from 0
    np.testing.assert_array_equal(losses(tmp_path), reference)


def test_eight_devices_match_one_device(tmp_path, reference):
    result = completed(command(tmp_path, "data=-1,fsdp=2"), devices=8)
    assert "devices=8 processes=1 mesh={'data': 4, 'fsdp': 2}" in result.stdout
    np.testing.assert_allclose(losses(tmp_path), reference, rtol=1e-5)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_match_one_device(tmp_path, reference):
    coordinator = f"127.0.0.1:{free_port()}"
    processes = [
        subprocess.Popen(
            command(tmp_path, "data=-1,fsdp=2", "--coordinator", coordinator, "--num-processes", "2",
                    "--process-id", str(process_id)),
            env=environment(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for process_id in range(2)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT_S))
    except subprocess.TimeoutExpired:
        pytest.fail(f"2-process run did not finish in {TIMEOUT_S}s")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-4000:]
        assert "devices=4 processes=2 mesh={'data': 2, 'fsdp': 2}" in stdout
    np.testing.assert_allclose(losses(tmp_path), reference, rtol=1e-5)
    data_dir = tmp_path / "checkpoints" / str(NUM_STEPS) / "data"
    states = [json.loads((data_dir / f"process_{i}-of-2.json").read_text()) for i in range(2)]
    assert states == [{"index": NUM_STEPS, "rows": [0, 8]}, {"index": NUM_STEPS, "rows": [8, 16]}]
