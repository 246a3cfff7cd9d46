"""What every benchmark script shares: the machine line and its section of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform

import jax

DOCS = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "benchmarks.md")


def machine() -> str:
    """e.g. ``x86_64, 2 cores, cpu, jax 0.10.2``."""
    return f"{platform.machine()}, {os.cpu_count()} cores, {jax.devices()[0].platform}, jax {jax.__version__}"


def write_section(title: str, section: str) -> None:
    """Replaces the section of docs/benchmarks.md that starts with the heading ``title`` (up to the
    next ``## `` heading) by ``section``, or appends it."""
    text = open(DOCS).read() if os.path.exists(DOCS) else "# Benchmarks\n\nEach section is rewritten by its script.\n"
    if title in text:
        start = text.index(title)
        end = text.find("\n## ", start + len(title))
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(DOCS, "w") as f:
        f.write(text)
