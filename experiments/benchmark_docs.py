"""What every benchmark script shares: the machine line and its section of docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys

import jax

DOCS = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "benchmarks.md")


def machine() -> str:
    """e.g. ``x86_64, 2 cores, cpu, jax 0.10.2`` (``..., gpu NVIDIA H100 80GB HBM3, ...`` on an accelerator)."""
    device = jax.devices()[0]
    kind = device.platform if device.platform == "cpu" else f"{device.platform} {device.device_kind}"
    return f"{platform.machine()}, {os.cpu_count()} cores, {kind}, jax {jax.__version__}"


def command() -> str:
    """The running script's command line with the script path relative to the repository root
    (``python experiments/bench_tts.py --out ...``), wherever it was started from."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
    script = os.path.relpath(os.path.abspath(sys.argv[0]), os.path.abspath(root))
    return shlex.join(["python", script, *sys.argv[1:]])


def save_report(report: dict, path: str, *, echo: bool = True) -> None:
    """Writes ``report`` as JSON to ``path`` (creating its folder; atomically, so a run killed
    mid-write keeps the previous file) and, with ``echo``, prints it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
    os.replace(path + ".tmp", path)
    if echo:
        print(json.dumps(report, indent=2))


def write_section(title: str, section: str) -> None:
    """Replaces the section of docs/benchmarks.md that starts with the heading ``title`` (up to the
    next ``## `` heading) by ``section``, or appends it."""
    text = open(DOCS).read() if os.path.exists(DOCS) else "# Benchmarks\n\nEach section is rewritten by its script.\n"
    if title in text:
        start = text.index(title)
        end = text.find("\n## ", start + len(title))
        text = text[:start] + section.rstrip("\n") + "\n" + (text[end:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(DOCS, "w") as f:
        f.write(text)
