"""MetricWriter (read back from metrics.jsonl and the raw TensorBoard event records), plots,
Progress."""

import io
import json
import struct

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.image import imread
from tensorboardX.proto import event_pb2

from jaxspeech.train import MetricWriter, Progress, as_rgb, plot_loss_curve, plot_mel, read_metrics


def read_events(logdir):
    """Decodes TFRecord-framed Event protos (u64 length, u32 crc, payload, u32 crc)."""
    events = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[offset + 12 : offset + 12 + length])
            events.append(event)
            offset += 12 + length + 4
    return events


def summaries(logdir):
    return [(e.step, v) for e in read_events(logdir) for v in e.summary.value]


def test_scalars_go_to_jsonl_and_tensorboard(tmp_path):
    writer = MetricWriter(tmp_path)
    writer.scalars(10, {"loss": np.float32(0.5), "lr": 1e-3})
    writer.scalars(20, {"loss": np.array(0.25)})
    writer.close()

    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 10, "loss": 0.5, "lr": 1e-3}, {"step": 20, "loss": 0.25}]
    scalars = {(step, v.tag): v.simple_value for step, v in summaries(tmp_path / "tensorboard")}
    assert scalars == {(10, "loss"): 0.5, (10, "lr"): pytest.approx(1e-3), (20, "loss"): 0.25}


def test_image_and_audio_reach_tensorboard(tmp_path):
    writer = MetricWriter(tmp_path)
    writer.image(3, "mel", np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4))
    writer.audio(3, "wave", np.sin(np.linspace(0, 100, 800)), 16000)
    writer.close()
    values = {v.tag: v for step, v in summaries(tmp_path / "tensorboard") if step == 3}
    assert (values["mel"].image.height, values["mel"].image.width) == (3, 4)
    assert values["wave"].audio.sample_rate == 16000 and values["wave"].audio.length_frames == 800


def test_disabled_writer_writes_nothing(tmp_path):
    writer = MetricWriter(tmp_path / "run", enabled=False)
    writer.scalars(1, {"loss": 1.0})
    writer.close()
    assert not (tmp_path / "run").exists()


def test_as_rgb_maps_min_and_max_to_the_colormap_ends():
    rgb = as_rgb(np.array([[2.0, 5.0], [3.5, 2.0]]))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    viridis = colormaps["viridis"]
    np.testing.assert_array_equal(rgb[0, 0], np.round(np.array(viridis(0.0)[:3]) * 255))
    np.testing.assert_array_equal(rgb[0, 1], np.round(np.array(viridis(1.0)[:3]) * 255))
    np.testing.assert_array_equal(rgb[1, 0], np.round(np.array(viridis(0.5)[:3]) * 255))
    picture = np.zeros((2, 3, 3), np.uint8)
    assert as_rgb(picture) is picture
    with pytest.raises(ValueError, match="H, W"):
        as_rgb(np.zeros((2, 3, 4)))


def test_plot_mel_puts_low_bins_at_the_bottom():
    mel = np.zeros((100, 40), np.float32)
    mel[:, :10] = 1.0  # loud low mel bins
    picture = plot_mel(mel)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    yellow = np.round(np.array(colormaps["viridis"](1.0)[:3]) * 255)
    is_yellow = np.all(np.abs(picture.astype(int) - yellow) <= 2, axis=-1)
    rows = np.nonzero(is_yellow[:, : picture.shape[1] // 2].any(axis=1))[0]  # left of colour bar
    plot_rows = np.nonzero((np.abs(np.diff(picture.astype(int), axis=1)).sum(-1) > 0).any(axis=1))[0]
    assert rows.size and rows.min() > (plot_rows.min() + plot_rows.max()) / 2  # lower half
    with pytest.raises(ValueError, match=r"\[T, F\]"):
        plot_mel(np.zeros(10))


def test_plot_mel_draws_f0_tracks_over_the_mel_only_where_voiced():
    mel = np.zeros((100, 40), np.float32)
    mel[0, 0] = 1.0  # the colour scale spans [0, 1]: the mel area is dark
    track = np.linspace(100.0, 300.0, 100)
    track[:50] = 0.0  # unvoiced first half: nothing drawn there
    picture = plot_mel(mel, f0={"rising": track}).astype(int)
    white = np.all(picture >= 250, axis=-1)
    dark = np.all(np.abs(picture - np.round(np.array(colormaps["viridis"](0.0)[:3]) * 255)) <= 2, axis=-1)
    rows, columns = np.nonzero(dark.any(axis=1))[0], np.nonzero(dark.any(axis=0))[0]  # the mel's area
    inside = white[rows.min():rows.max(), columns.min():columns.max()]
    width = columns.max() - columns.min()
    drawn = np.nonzero(inside.any(axis=0))[0]
    assert drawn.size and drawn.min() > 0.4 * width  # starts near the middle
    heights = [np.nonzero(inside[:, c])[0].mean() for c in (drawn.min(), drawn.min() + width // 4)]
    assert heights[1] < heights[0]  # rising F0 goes up the picture


def test_read_metrics_merges_records_per_step_later_wins_and_loss_curve_plots_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [
        {"step": 1, "loss": 4.0},
        {"step": 2, "loss": 2.0},
        {"step": 2, "eval/wer": 0.5},
        {"step": 3, "loss": 1.0},
        {"step": 2, "loss": 3.0},  # a resumed run logged step 2 again
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert read_metrics(path) == [records[0], {"step": 2, "loss": 3.0, "eval/wer": 0.5}, records[3]]

    steps, values = plot_loss_curve(path, tmp_path / "loss.png")
    np.testing.assert_array_equal(steps, [1, 2, 3])
    np.testing.assert_array_equal(values, [4.0, 3.0, 1.0])
    assert imread(tmp_path / "loss.png").shape[:2] == (400, 600)
    with pytest.raises(ValueError, match="no 'wer'"):
        plot_loss_curve(path, tmp_path / "wer.png", key="wer")


def test_progress_shows_step_and_latest_loss():
    out = io.StringIO()
    progress = Progress(10, 2, file=out)
    progress.update(3)
    progress.update(8, {"loss": np.float32(0.123456)})
    progress.close()
    text = out.getvalue()
    assert "8/10" in text and "loss=0.1235" in text and "step/s" in text
    with pytest.raises(ValueError, match="initial step 11"):
        Progress(10, 11)
