"""transcribe_files: a tiny random transformers Whisper checkpoint + tokenizer, against decoding.transcribe."""

import sys

import numpy as np
import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from jaxspeech.audio.io import load_audio  # noqa: E402
from jaxspeech.models.whisper import (  # noqa: E402
    decoder_prefix,
    detect_language,
    import_transformers_checkpoint,
    transcribe,
)
from jaxspeech.models.whisper.files import (  # noqa: E402
    _first_window_features,
    load_tokenizer,
    tokenizer_special_tokens,
    transcribe_files,
)
from tests.whisper_tiny_checkpoint import (  # noqa: E402
    CHARACTERS,
    EOT,
    NO_TIMESTAMPS,
    SOT,
    build_checkpoint,
    reference_decode,
    save_tokenizer,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("whisper_ckpt"))


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    """A 1 s file at 16 kHz and a 1.2 s stereo file at 22.05 kHz (resampled and mixed down on load)."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("wavs")
    rng = np.random.default_rng(0)
    sf.write(root / "a.wav", 0.1 * rng.normal(size=16000).astype(np.float32), 16000)
    sf.write(root / "b.wav", 0.1 * rng.normal(size=(26460, 2)).astype(np.float32), 22050)
    return [str(root / "a.wav"), str(root / "b.wav")]


def expected_texts(checkpoint, files, language, **options):
    """decoding.transcribe on the loaded audio, decoded without transformers."""
    config, graphdef, params = import_transformers_checkpoint(checkpoint)
    tokens = tokenizer_special_tokens(config, load_tokenizer(checkpoint), checkpoint)
    texts = []
    for path in files:
        waveform = load_audio(path, sample_rate=16000)
        code = language
        if code is None and tokens.multilingual:
            code = detect_language(graphdef, params, _first_window_features(waveform, "whisper_80"), tokens)[0]
        ids = transcribe(graphdef, params, config, waveform, decoder_prefix(tokens, language=code), tokens, **options)
        assert ids and all(i < EOT for i in ids)  # the random model does write text, so the comparison means something
        texts.append(reference_decode(ids).strip())
    return texts


def test_tokenizer_decodes_text_ids_and_layout_matches(checkpoint):
    tokenizer = load_tokenizer(checkpoint)
    ids = [8, 5, 12, 12, 15, 0, 62, 30]
    assert tokenizer.decode(ids, skip_special_tokens=True) == reference_decode(ids) == "hello 9D"
    assert tokenizer.decode(list(range(80)), skip_special_tokens=True) == CHARACTERS
    config, _, _ = import_transformers_checkpoint(checkpoint)
    tokens = tokenizer_special_tokens(config, tokenizer, checkpoint)
    assert (tokens.eot, tokens.sot, tokens.languages, tokens.no_timestamps, tokens.timestamp_begin) == (
        EOT, SOT, ("en", "zh"), NO_TIMESTAMPS, 90)  # fmt: skip
    assert tokens.multilingual


def test_transcribe_files_matches_transcribe(checkpoint, wavs):
    assert transcribe_files(checkpoint, wavs, language="en") == expected_texts(checkpoint, wavs, "en")
    # No language: detected per file from its first window.
    assert transcribe_files(checkpoint, wavs[:1]) == expected_texts(checkpoint, wavs[:1], None)
    assert transcribe_files(checkpoint, wavs[:1], language="zh", beam_size=2) == expected_texts(
        checkpoint, wavs[:1], "zh", beam_size=2)  # fmt: skip


def test_english_only_checkpoint_takes_no_language_token(tmp_path, wavs):
    path = build_checkpoint(tmp_path, multilingual=False)
    config, _, _ = import_transformers_checkpoint(path)
    tokens = tokenizer_special_tokens(config, load_tokenizer(path), path)
    assert decoder_prefix(tokens) == (SOT, NO_TIMESTAMPS)
    assert transcribe_files(path, wavs[:1]) == expected_texts(path, wavs[:1], None)
    with pytest.raises(ValueError, match="English-only"):
        transcribe_files(path, wavs[:1], language="zh")


def test_bad_input_is_named(checkpoint, wavs, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        transcribe_files(tmp_path / "nowhere", wavs)
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        transcribe_files(checkpoint, wavs, language="fr")
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        transcribe_files(checkpoint, wavs, beam_size=0)
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((checkpoint / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="no Whisper tokenizer files"):
        transcribe_files(bare, wavs)
    # A tokenizer with one text token fewer puts every special token one id early.
    save_tokenizer(bare, CHARACTERS[:79])
    with pytest.raises(ValueError, match="do not belong to this checkpoint"):
        transcribe_files(bare, wavs)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match="needs the `transformers` package"):
        transcribe_files(checkpoint, wavs)


def test_generation_config_decides_multilingual(tmp_path):
    # Without generation_config.json the openai-whisper rule (vocab >= 51865) applies: English-only here.
    path = build_checkpoint(tmp_path)
    (path / "generation_config.json").unlink()
    config, _, _ = import_transformers_checkpoint(path)
    assert not tokenizer_special_tokens(config, load_tokenizer(path), path).multilingual
