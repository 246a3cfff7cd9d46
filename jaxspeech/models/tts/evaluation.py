"""A split synthesized and scored against its recordings: MCD, ASR CER/WER of the synthesized audio,
comma pauses, terminal contour direction, RTF.

Every figure is also taken on the acoustic model's own mel through Griffin-Lim
(``griffin_lim_on_model_mel``), beside the default vocoder's, and the contour also as read off that mel with
no vocoder (``contour_read_from_model_mel``): a vocoder that renders pitch from a separate predictor cannot
hide a decoder that lost it.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

from jaxspeech import audio
from jaxspeech.eval import error_rates
from jaxspeech.eval.mcd import mel_cepstral_distortion
from jaxspeech.eval.prosody import (
    comma_pause_mae,
    contour_shares,
    expected_direction,
    judged_directions,
    mel_terminal_direction,
    terminal_direction,
)
from jaxspeech.eval.rtf import time_call
from jaxspeech.models.tts.synthesizer import SynthesisItem, Synthesizer
from jaxspeech.models.tts.vocoders import Vocoder, vocoder_reads_pitch

Transcriber = Callable[[list[str]], list[str]]
MODEL_MEL = "griffin_lim_on_model_mel"
MEL_READ = "contour_read_from_model_mel"


def _share(hits: Sequence[bool]) -> float:
    return float(np.mean(hits)) if len(hits) else float("nan")


def intonation_metrics(synthesized: Sequence[np.ndarray], references: Sequence[np.ndarray], texts: Sequence[str],
                       sample_rate: int) -> dict[str, float]:
    """Terminal contour direction of the synthesized audio against the punctuation (? rises,
    . falls) and against the reference audio's measured direction."""
    read = functools.partial(terminal_direction, sample_rate=sample_rate)
    return _contour_metrics(synthesized, texts, read, references)


def mel_contour_metrics(log_mels: Sequence[np.ndarray], texts: Sequence[str], preset) -> dict[str, float]:
    """:func:`intonation_metrics` against the punctuation of the pitch read off each log-mel ``[T, M]``
    itself (``eval.prosody.mel_terminal_direction``): what a mel carries, no vocoder between."""
    return _contour_metrics(log_mels, texts, functools.partial(mel_terminal_direction, preset=preset))


def _contour_metrics(signals: Sequence[np.ndarray], texts: Sequence[str], read: Callable[[np.ndarray], str],
                     references: Sequence[np.ndarray] | None = None) -> dict[str, float]:
    """``eval.prosody.contour_shares`` of ``read(signal) -> "rising" | "falling"`` (a signal with nothing voiced
    counts as a miss), and the agreement with ``read`` of the references where given."""
    ours = judged_directions(signals, texts, read)
    scores = contour_shares(ours, texts)
    if references is not None:
        theirs = judged_directions(references, texts, read)
        judged = [k for k, text in enumerate(texts) if expected_direction(text)]
        scores["contour_agreement_with_reference"] = _share([ours[k] == theirs[k] for k in judged])
        scores["reference_contour_accuracy"] = contour_shares(theirs, texts)["contour_accuracy"]
    return scores


def _scores(paths: Sequence[str], synthesized: Sequence[np.ndarray], references: Sequence[np.ndarray],
            texts: Sequence[str], sample_rate: int, preset, transcribe: Transcriber | None) -> dict:
    scores = {"mcd_db": float(np.mean([mel_cepstral_distortion(s, r, preset=preset)
                                       for s, r in zip(synthesized, references)])),
              **comma_pause_mae(synthesized, references, texts, sample_rate),
              **intonation_metrics(synthesized, references, texts, sample_rate),
              "asr_cer": None, "asr_wer": None}
    if transcribe is not None:
        rates = error_rates(list(texts), transcribe(list(paths)))
        scores.update(asr_cer=rates["cer"], asr_wer=rates["wer"])
    return scores


def evaluate_items(synthesizer: Synthesizer, params, items: Sequence[SynthesisItem], records: Sequence[dict], *,
                   out_dir: str, key: jax.Array, batch_size: int, rtf_utterances: int, rtf_repeats: int,
                   reference_vocoders: Mapping[str, Vocoder], transcribe: Transcriber | None = None,
                   score: bool = True, **options) -> dict:
    """Synthesizes ``items`` (one per record, in batches of ``batch_size`` sorted by length) and
    scores them against the records' audio and text.

    Audio is written to ``out_dir/<id>.wav`` (the synthesizer's vocoder) and
    ``out_dir/<name>/<id>.wav`` for each of ``reference_vocoders`` (name -> vocoder on the same
    model output). Result: the default path's ``mcd_db``, ``asr_cer``/``asr_wer`` (None without a
    ``transcribe``), comma pause MAE, contour scores, ``rtf`` (acoustic model + vocoder seconds per
    second of audio, one utterance at a time, compiled, over the first ``rtf_utterances``),
    ``acoustic_rtf`` (the same for the acoustic model alone: text to mel), ``contour_read_from_model_mel`` (the
    contour scores of the pitch read off the model's mel itself, ``eval.prosody.mel_terminal_direction``), and
    ``<name>: {same scores}`` for each reference vocoder. ``score=False``: the audio and the RTFs alone, no
    recordings read (an accelerator machine that synthesizes; :func:`score_saved_audio` scores the folder
    elsewhere). options: synthesis options (guidance, sampler options) passed to :meth:`Synthesizer.generate`.
    """
    preset, rate = synthesizer.preset, synthesizer.preset.sample_rate
    vocoders = {"": synthesizer.vocoder, **reference_vocoders}
    pitch = any(vocoder_reads_pitch(vocoder) for vocoder in vocoders.values())
    waveforms: dict[str, dict[int, np.ndarray]] = {name: {} for name in vocoders}
    mels: dict[int, np.ndarray] = {}
    order = sorted(range(len(items)), key=lambda i: sum(len(p) for p in items[i].pieces))
    for b in range(0, len(order), batch_size):
        chunk = order[b:b + batch_size]
        batch_key = jax.random.fold_in(key, b)
        rows, out = synthesizer.generate(params, [items[i] for i in chunk], key=batch_key, pitch=pitch, **options)
        for name, vocoder in vocoders.items():
            rendered = np.asarray(vocoder(out, jax.random.fold_in(batch_key, 1)))
            joined = synthesizer.join(rows, out, rendered, len(chunk))
            waveforms[name].update((i, waveform) for i, (_, waveform) in zip(chunk, joined))
        mels.update((i, mel) for i, (mel, _) in zip(chunk, joined))  # the same model mel whatever the vocoder
    for name in vocoders:
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)
        for i, path in enumerate(_paths(out_dir, name, records)):
            audio.save_audio(path, waveforms[name][i], rate)
    result = score_saved_audio(out_dir, records, preset, transcribe, names=list(vocoders)) if score else {}
    if score:
        result[MEL_READ] = mel_contour_metrics([mels[i] for i in range(len(items))], [r["text"] for r in records],
                                               preset)

    rtf_items = items[:rtf_utterances]
    audio_seconds = sum(len(waveforms[""][i]) for i in range(len(rtf_items))) / rate
    for name, call in (("rtf", synthesizer.synthesize), ("acoustic_rtf", synthesizer.generate)):
        seconds = sum(time_call(call, params, [item], key=key, warmup=1, repeats=rtf_repeats, **options)
                      for item in rtf_items)
        result[name] = seconds / audio_seconds
    return json_ready(result)


def score_saved_audio(out_dir: str, records: Sequence[dict], preset, transcribe: Transcriber | None = None,
                      names: Sequence[str] | None = None) -> dict:
    """The scores of :func:`evaluate_items`, which are always taken on the audio as written (16-bit,
    clipped: what a listener and the recognizer get), for ``out_dir``'s ``<id>.wav`` and the reference
    vocoders' ``<name>/<id>.wav`` (names: "" and every subfolder, unless given); e.g. audio synthesized on
    another machine with ``score=False``. Every record needs its file."""
    if names is None:
        names = [""] + sorted(n for n in os.listdir(out_dir) if os.path.isdir(os.path.join(out_dir, n)))
    missing = [p for name in names for p in _paths(out_dir, name, records) if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} records have no synthesized audio in {out_dir}, e.g. {missing[0]}")
    rate = preset.sample_rate
    references = [audio.load_audio(r["audio"], sample_rate=rate) for r in records]
    texts = [r["text"] for r in records]
    result = {}
    for name in names:
        paths = _paths(out_dir, name, records)
        synthesized = [audio.load_audio(p, sample_rate=rate) for p in paths]
        scores = _scores(paths, synthesized, references, texts, rate, preset, transcribe)
        result.update(scores) if name == "" else result.update({name: scores})
    return json_ready(result)


def _paths(out_dir: str, name: str, records: Sequence[dict]) -> list[str]:
    return [os.path.join(out_dir, name, f"{record['id']}.wav") for record in records]


def json_ready(value):
    """NaN shares (nothing judged) as None, so the result is valid JSON."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value
