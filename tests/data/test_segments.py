import dataclasses

import numpy as np
import pytest
import soundfile

from jaxspeech.audio import PRESETS, log_mel
from jaxspeech.data.manifest import SkipCounter
from jaxspeech.data.pipeline import SpeechDataset
from jaxspeech.data.segments import SegmentBatches

HOP, FRAMES = 256, 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Five utterances of known noise at 22.05 kHz, one shorter than a segment, plus one missing file."""
    root = tmp_path_factory.mktemp("wavs")
    rng = np.random.default_rng(0)
    records = []
    for i, seconds in enumerate([0.5, 0.3, 0.05, 0.4, 0.6]):
        wave = (0.3 * rng.uniform(-1, 1, size=int(seconds * 22050))).astype(np.float32)
        path = root / f"u{i}.wav"
        soundfile.write(path, wave, 22050, subtype="FLOAT")
        records.append({"id": f"u{i}", "audio": str(path), "text": "x"})
    records.append({"id": "gone", "audio": str(root / "gone.wav"), "text": "x"})
    return SpeechDataset(records, preset="tts_22k", labeler=None, skips=SkipCounter(), cache=False)


def batches(dataset, **kwargs):
    kwargs = {"segment_frames": FRAMES, "batch_size": 4, "seed": 3, "num_threads": 1, **kwargs}
    return SegmentBatches(dataset, **kwargs)


def test_segments_are_slices_of_the_waveform_with_their_own_log_mel(dataset):
    assert len(dataset) == 5 and dataset.skips.total == 1  # the missing file is counted, not fatal
    loader = batches(dataset)
    for step in range(3):
        batch = next(loader)
        assert batch["audio"].shape == (4, FRAMES * HOP) and batch["mel"].shape == (4, FRAMES, 80)
        for row, (index, start) in enumerate(loader.rows(step)):
            assert batch["index"][row] == index
            wave = soundfile.read(dataset.records[index]["audio"], dtype="float32")[0]
            segment = wave[start:start + FRAMES * HOP]
            n = len(segment)
            np.testing.assert_array_equal(batch["audio"][row, :n], segment)
            assert batch["audio_mask"][row].sum() == n and not batch["audio"][row, n:].any()
            assert batch["mel_mask"][row].sum() == min(FRAMES, n // HOP)
            np.testing.assert_allclose(batch["mel"][row], np.asarray(log_mel(batch["audio"][row], "tts_22k")),
                                       atol=1e-5)


def test_epochs_cover_every_record_and_offsets_are_seeded(dataset):
    loader = batches(dataset, batch_size=5)
    assert sorted(index for index, _ in loader.rows(0)) == list(range(5))
    assert loader.rows(4) == batches(dataset, batch_size=5).rows(4)
    assert loader.rows(4) != batches(dataset, batch_size=5, seed=4).rows(4)


def test_state_restores_the_exact_next_batch(dataset):
    loader = batches(dataset)
    next(loader), next(loader)
    state = loader.get_state()
    expected = next(loader)
    resumed = batches(dataset)
    resumed.set_state(state)
    got, direct = next(resumed), loader.batch(2)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
        np.testing.assert_array_equal(direct[name], expected[name])


def test_process_shares_partition_the_global_batch(dataset):
    whole = next(batches(dataset))
    halves = [next(batches(dataset, process_index=p, process_count=2)) for p in range(2)]
    for name in whole:
        np.testing.assert_array_equal(np.concatenate([h[name] for h in halves]), whole[name])


def test_bad_arguments_are_named(dataset):
    with pytest.raises(ValueError, match="divide over 3 processes"):
        batches(dataset, process_count=3)
    with pytest.raises(ValueError, match="segment_frames"):
        batches(dataset, segment_frames=0)
    centred = dataclasses.replace(PRESETS["tts_22k"], padding="center")  # T*hop samples give T+1 frames
    with pytest.raises(ValueError, match="tile the waveform"):
        batches(SpeechDataset(dataset.records, preset=centred, labeler=None, cache=False))
