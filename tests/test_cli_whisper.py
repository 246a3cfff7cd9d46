"""`jaxspeech transcribe --checkpoint` with a tiny random transformers Whisper checkpoint."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from jaxspeech.audio.io import load_audio  # noqa: E402
from jaxspeech.cli import main  # noqa: E402
from jaxspeech.models.whisper import decoder_prefix, import_transformers_checkpoint, transcribe  # noqa: E402
from jaxspeech.models.whisper.files import load_tokenizer, tokenizer_special_tokens  # noqa: E402
from tests.whisper_tiny_checkpoint import EOT, build_checkpoint, reference_decode  # noqa: E402


def test_transcribe_checkpoint_prints_json_lines(tmp_path, capsys):
    import soundfile as sf

    checkpoint = build_checkpoint(tmp_path / "ckpt")
    wav = tmp_path / "speech.wav"
    sf.write(wav, 0.1 * np.random.default_rng(1).normal(size=12000).astype(np.float32), 16000)
    assert main(["transcribe", "--checkpoint", str(checkpoint), "--language", "en", str(wav), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    config, graphdef, params = import_transformers_checkpoint(checkpoint)
    tokens = tokenizer_special_tokens(config, load_tokenizer(checkpoint), checkpoint)
    ids = transcribe(graphdef, params, config, load_audio(wav, sample_rate=16000),
                     decoder_prefix(tokens, language="en"), tokens)  # fmt: skip
    assert ids and all(i < EOT for i in ids)
    assert [json.loads(line) for line in lines] == [{"file": str(wav), "text": reference_decode(ids).strip()}]
    # Plain output: one transcript per line, the same text.
    assert main(["transcribe", "--checkpoint", str(checkpoint), "--language", "en", str(wav), str(wav)]) == 0
    assert capsys.readouterr().out.splitlines() == [reference_decode(ids).strip()] * 2


def test_transcribe_bad_arguments(tmp_path, capsys):
    wav = tmp_path / "x.wav"
    wav.write_bytes(b"")
    with pytest.raises(SystemExit, match="Whisper checkpoint directory not found: .*nowhere"):
        main(["transcribe", "--checkpoint", str(tmp_path / "nowhere"), str(wav)])
    with pytest.raises(SystemExit) as error:
        main(["transcribe", "--checkpoint", str(tmp_path), "--workdir", str(tmp_path), str(wav)])
    assert error.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:
        main(["transcribe", str(wav)])
    assert error.value.code == 2
    assert "one of the arguments --workdir --checkpoint is required" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--language only applies to a Whisper --checkpoint"):
        main(["transcribe", "--workdir", str(tmp_path), "--language", "en", str(wav)])
