"""Metric writers (TensorBoard + metrics.jsonl) and small plotting helpers."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)


def _to_float(value: Any) -> float:
    array = np.asarray(value)
    if array.size != 1:
        raise ValueError(f"scalar metric expected, got shape {array.shape}")
    return float(array.reshape(()))


class MetricWriter:
    """Writes scalars, images and audio for one run; only process 0 writes.

    Files under `workdir`: `metrics.jsonl` (one {"step": ..., **scalars} line per call,
    appended, so a resumed run adds lines; `read_metrics` merges them per step, later wins) and
    `tensorboard/` (events; a resumed run purges events from its first written step on).
    """

    def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True):
        self.workdir = Path(workdir)
        self.enabled = enabled and jax.process_index() == 0
        self._summary = None
        self._jsonl = None
        if self.enabled:
            self.workdir.mkdir(parents=True, exist_ok=True)
            # Line-buffered: a killed run keeps every line it logged.
            self._jsonl = open(self.workdir / "metrics.jsonl", "a", encoding="utf-8", buffering=1)

    def _tensorboard(self, step: int):
        # Created on first use so that a resumed run can purge the events that the
        # interrupted run wrote after the checkpoint it resumes from.
        if self._summary is None:
            from tensorboardX import SummaryWriter

            self._summary = SummaryWriter(str(self.workdir / "tensorboard"), purge_step=step)
        return self._summary

    def scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """scalars: name -> scalar (python number or 0-d / size-1 array)."""
        if not self.enabled:
            return
        step = int(step)
        values = {name: _to_float(value) for name, value in scalars.items()}
        summary = self._tensorboard(step)
        for name, value in values.items():
            summary.add_scalar(name, value, step)
        self._jsonl.write(json.dumps({"step": step, **values}) + "\n")

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        """image: [H, W] float (colour-mapped, min..max -> viridis) or [H, W, 3] uint8."""
        if not self.enabled:
            return
        self._tensorboard(int(step)).add_image(tag, as_rgb(image), int(step), dataformats="HWC")

    def audio(self, step: int, tag: str, waveform: np.ndarray, sample_rate: int) -> None:
        """waveform: [S] float in [-1, 1] (clipped)."""
        if not self.enabled:
            return
        waveform = np.asarray(waveform, np.float32)
        if waveform.ndim != 1:
            raise ValueError(f"waveform must be [S], got shape {waveform.shape}")
        self._tensorboard(int(step)).add_audio(
            tag, np.clip(waveform, -1.0, 1.0), int(step), sample_rate=int(sample_rate)
        )

    def flush(self) -> None:
        if self._jsonl is not None:
            self._jsonl.flush()
        if self._summary is not None:
            self._summary.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._summary is not None:
            self._summary.close()
            self._summary = None


def as_rgb(image: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """[H, W] float -> [H, W, 3] uint8 via `cmap` over the image's min..max; [H, W, 3] uint8
    is returned as is."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8:
        return image
    if image.ndim != 2 or not np.issubdtype(image.dtype, np.floating):
        raise ValueError(
            f"image must be [H, W] float or [H, W, 3] uint8, got {image.dtype} {image.shape}"
        )
    low, high = np.nanmin(image), np.nanmax(image)
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return (colormaps[cmap](scaled)[..., :3] * 255).round().astype(np.uint8)


def plot_mel(mel: np.ndarray, *, title: str | None = None, f0: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """mel [T, F] -> [H, W, 3] uint8 picture (time right, mel bin up, with colour bar).

    f0: named F0 tracks [T'] in Hz (NaN or 0 where unvoiced; T' may differ from T, e.g. a
    reference of another length) drawn over the mel on a right-hand Hz axis.
    """
    mel = np.asarray(mel, np.float32)
    if mel.ndim != 2:
        raise ValueError(f"mel must be [T, F], got shape {mel.shape}")
    figure = Figure(figsize=(min(max(4.0, mel.shape[0] / 60), 16.0), 3.0), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    picture = axes.imshow(mel.T, origin="lower", aspect="auto", interpolation="nearest")
    figure.colorbar(picture, ax=axes, pad=0.15 if f0 else 0.05)
    axes.set_xlabel("frame")
    axes.set_ylabel("mel bin")
    if f0:
        hz = axes.twinx()
        for (name, track), colour in zip(f0.items(), ("white", "red", "cyan")):
            track = np.asarray(track, np.float32)
            hz.plot(np.where(track > 0, track, np.nan), color=colour, linewidth=1.5, label=name)
        hz.set_ylabel("F0 (Hz)")
        hz.set_xlim(-0.5, mel.shape[0] - 0.5)
        hz.legend(loc="upper right", fontsize="small")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """metrics.jsonl -> one record per step, sorted by step. Records of the same step are merged
    (train and eval scalars logged separately); where a resumed run logged a step again, the
    later values win."""
    by_step: dict[int, dict[str, float]] = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                record = json.loads(line)
                by_step.setdefault(int(record["step"]), {}).update(record)
    return [by_step[step] for step in sorted(by_step)]


def plot_loss_curve(
    metrics_jsonl_path: str | os.PathLike, out_png: str | os.PathLike, *, key: str = "loss"
) -> tuple[np.ndarray, np.ndarray]:
    """Plots `key` against step from a metrics.jsonl into `out_png` (log y when all > 0).

    Returns the plotted (steps, values).
    """
    records = [r for r in read_metrics(metrics_jsonl_path) if key in r]
    if not records:
        raise ValueError(f"no {key!r} values in {metrics_jsonl_path}")
    steps = np.array([r["step"] for r in records])
    values = np.array([r[key] for r in records], np.float64)
    figure = Figure(figsize=(6.0, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(steps, values)
    finite = values[np.isfinite(values)]
    if finite.size and (finite > 0).all() and not math.isclose(finite.max(), finite.min()):
        axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel(key)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_png)
    return steps, values


def write_data_stats(workdir: str | os.PathLike, stats: Mapping[str, Any]) -> None:
    """Logs a run's data summary (utterances, skips, padding, ...) and writes it to ``workdir/data_stats.json``."""
    log.info("data: %s", json.dumps(stats))
    with open(os.path.join(workdir, "data_stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
