"""Does the decoder's mel carry the terminal pitch movement it is given? (issue 19: where the pitch is lost)

    python experiments/diagnose_decoder_pitch.py --tts-workdir runs/tts_fm_tiny [--split valid] [--limit 76]

Each utterance of the split is decoded at the recording's own timing (MAS of its mel to the text means, as in
training), so that predicted durations cannot hide or fake a contour, and rendered by Griffin-Lim; the terminal
contour direction of that audio (``eval.prosody.terminal_direction``) is scored against the punctuation
(``contour_accuracy``) and against the recording (``contour_agreement_with_reference``). Rows:

- ``recording_mel``: Griffin-Lim on the recording's own mel, the ceiling of this measurement;
- ``decoder``: the decoder's mel from the text-predicted intonation style and, for a decoder that reads pitch
  (``model.pitch.condition_decoder``), the pitch predictor's F0 at those durations: synthesis, the timing aside;
- ``decoder_recorded_pitch`` (a decoder that reads pitch): the recording's F0 and voicing instead, as in training;
- ``decoder_mirrored_pitch`` (likewise): the recording's log-F0 mirrored over the ``--window-ms`` that end at
  its last voiced frame, about the window's first voiced value, a rise made a fall and back; ``follows_mirror``
  is the share of judged utterances whose audio turns the other way from ``decoder_recorded_pitch``'s.

Besides the audio's direction, each row's mel is compared frame by frame with the pitch it should carry
(``ripple_agreement``: ``audio.pitch_comb.ripple_agreement`` over the recording's voiced frames, against the
recording's F0, or the mirrored F0 for the mirrored row); ``mirror_window`` compares the mirrored row's mel in the
mirrored frames alone with the mirrored F0 and with the recorded one: a decoder that draws its input's harmonics
agrees with the first, one that ignores its input with the second. ``terminal_rising`` and ``terminal_falling``
give it over each utterance's last ``--window-ms`` of voiced frames alone, for questions and for statements, with
the ripple's depth (``audio.pitch_comb.ripple_depth``: how deep the harmonic peaks are, in log-mel units).
``read_from_mel`` scores each row's terminal direction read off the mel itself (``models.tts.evaluation.
mel_contour_metrics``: the F0 of ``audio.pitch_comb.mel_f0``, no vocoder), so a contour the mel carries and
Griffin-Lim loses shows as ``read_from_mel`` above the audio's ``contour_accuracy``.

Reading it: the text side's direction is ``diagnose_intonation.py``'s; ``recording_mel`` high and ``decoder`` at
chance puts the loss in the decoder (or, with pitch, in the predicted F0 if ``decoder_recorded_pitch`` is high);
``decoder_recorded_pitch`` near chance or ``follows_mirror`` low means the decoder does not read its pitch input.
Prints one JSON object (``--out`` also writes it).
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
from benchmark_docs import save_report
from flax import nnx

from jaxspeech import audio
from jaxspeech.audio.pitch_comb import ripple_agreement, ripple_depth
from jaxspeech.data.readers import load_records
from jaxspeech.eval.prosody import expected_direction, terminal_direction
from jaxspeech.models import tts
from jaxspeech.models.tts.conv_stack import masked
from jaxspeech.models.tts.decoder import reads_pitch
from jaxspeech.models.tts.encoder import align
from jaxspeech.models.tts.evaluation import intonation_metrics, json_ready, mel_contour_metrics
from jaxspeech.models.tts.prosody import f0_hz, pitch_condition, pitch_inputs, pitch_targets
from jaxspeech.models.tts.synthesizer import SILENCE
from jaxspeech.train.recipes.tts_fm import load_synthesizer, ordered_batches


def mirrored_tail(log_f0: np.ndarray, voiced: np.ndarray, frames: int) -> np.ndarray:
    """[B,T] log-F0 with each row's voiced frames among the ``frames`` frames that end at its last voiced one
    mirrored about the first of them: ``2 f[s] - f[t]``, so the movement over the window changes sign and its
    start stays put."""
    out = log_f0.copy()
    for row in range(log_f0.shape[0]):
        idx = np.flatnonzero(voiced[row])
        if idx.size < 2:
            continue
        window = idx[idx > idx[-1] - frames]
        out[row, window] = 2 * log_f0[row, window[0]] - log_f0[row, window]
    return out


def decode(graphdef, params, config, batch, key, pitch, sampler: dict):
    """The decoder's log-mel [B,T,F] (data units) at the recording's timing; pitch: None (the decoder reads
    none), "predicted" (the pitch predictor's at those durations) or a given (normalised log-F0 [B,T], voiced
    [B,T]) pair."""
    m = config.model
    model = nnx.merge(graphdef, params)
    tokens, token_mask, speaker = (jnp.asarray(batch[k]) for k in ("tokens", "token_mask", "speaker"))
    token_mask = token_mask.astype(bool)
    mel_mask = jnp.asarray(batch["mel_mask"]).astype(bool)
    boundaries = {name: jnp.asarray(batch[name]) for name in tts.BOUNDARY_KEYS}
    enc = model.encode(tokens, token_mask, speaker, boundaries)  # the text-predicted style, as in synthesis
    mel = masked((jnp.asarray(batch["mel"], jnp.float32) - m.mel_mean) / m.mel_std, mel_mask)
    path, durations = align(enc["mu"], mel, token_mask, mel_mask)
    mu_frames = jnp.einsum("blt,blf->btf", path, enc["mu"])
    cond = {"mu": mu_frames, "speaker": speaker, "mask": mel_mask}
    if pitch == "predicted":
        frames = jnp.einsum("blt,bld->btd", path, pitch_inputs(enc["hidden"], durations))
        prediction = model.pitch(frames, mel_mask, None)
        cond["pitch"] = pitch_condition(m.pitch, prediction[..., 0], jax.nn.sigmoid(prediction[..., 1]), mel_mask)
    elif pitch is not None:
        log_f0, voiced = pitch
        cond["pitch"] = pitch_condition(m.pitch, jnp.asarray(log_f0), jnp.asarray(voiced, jnp.float32), mel_mask)
    objective, objective_config = tts.objective_of(m)
    x = objective.sample(tts.decoder_network(graphdef, params), key, mel.shape, cond=cond, config=objective_config,
                         noise_mean=mu_frames if m.decoder.noise_around_mu else None, **sampler)
    return np.asarray(x * m.mel_std + m.mel_mean)


def griffin_lim(log_mel: np.ndarray, mel_mask: np.ndarray, config) -> list[np.ndarray]:
    """Each row's waveform (silence past its mask, as synthesis pads), its valid frames only."""
    hop = audio.get_preset(config.data.preset).hop_length
    log_mel = np.where(mel_mask[..., None], log_mel, SILENCE)
    waveforms = np.asarray(audio.log_mel_to_audio(jnp.asarray(log_mel), config.data.preset,
                                                  n_iter=config.synth.griffin_lim.iterations))
    return [waveforms[r, :int(mel_mask[r].sum()) * hop] for r in range(log_mel.shape[0])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tts-workdir", required=True)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--limit", type=int, default=None, help="utterances (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the config's)")
    parser.add_argument("--window-ms", type=float, default=500.0, help="the mirrored stretch of voiced frames")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    synthesizer, params, step = load_synthesizer(args.tts_workdir)
    config, d = synthesizer.config, synthesizer.config.data
    preset = audio.get_preset(d.preset)
    records = load_records(d.dir, split=args.split)[:args.limit or None]
    dataset, loader = ordered_batches(config, synthesizer.tokenizer, synthesizer.speakers, records)
    sampler = tts.sampler_options(config.model, {**config.synth.sampler.to_dict(),
                                                 **({"steps": args.steps} if args.steps else {})})
    rows = ["recording_mel", "decoder"]
    if reads_pitch(config.model):
        rows += ["decoder_recorded_pitch", "decoder_mirrored_pitch"]
    window = int(round(args.window_ms / 1000 * preset.sample_rate / preset.hop_length))
    audio_of = {name: [] for name in rows}
    frames_of = {name: [] for name in rows}  # (log-mel [T,F], F0 [T] Hz, 0 where unvoiced) per utterance
    mirror_pairs = {"mirrored": [], "recorded": []}  # the mirrored row's mel in the mirrored frames
    references, texts = [], []
    key = jax.random.key(config.seed)
    for b in range(loader.batches_per_epoch):
        batch = next(loader)
        kept = np.flatnonzero(np.asarray(batch["index"]) >= 0)  # the last batch's filler rows are empty
        batch = {name: np.asarray(value)[kept] for name, value in batch.items()}
        mel_mask = batch["mel_mask"].astype(bool)
        texts += [dataset.records[i]["text"] for i in batch["index"]]
        references += [audio.load_audio(dataset.records[i]["audio"], sample_rate=preset.sample_rate)
                       for i in batch["index"]]
        mels = {"recording_mel": np.asarray(batch["mel"], np.float32)}
        batch_key = jax.random.fold_in(key, b)
        log_f0, voiced = (np.asarray(x) for x in pitch_targets(config.model.pitch, batch, jnp.asarray(mel_mask)))
        given = {"recorded": (log_f0, voiced), "mirrored": (mirrored_tail(log_f0, voiced, window), voiced)}
        pitch_of = {"decoder": "predicted" if reads_pitch(config.model) else None,
                    "decoder_recorded_pitch": given["recorded"], "decoder_mirrored_pitch": given["mirrored"]}
        for name in rows[1:]:
            mels[name] = decode(synthesizer.graphdef, params, config, batch, batch_key, pitch_of[name], sampler)
        for name in rows:
            audio_of[name] += griffin_lim(mels[name], mel_mask, config)
        f0 = {which: np.where(voiced, np.asarray(f0_hz(config.model.pitch, log_f0)), 0.0)
              for which, (log_f0, voiced) in given.items()}
        for name in rows:
            given = f0["mirrored" if name == "decoder_mirrored_pitch" else "recorded"]
            frames_of[name] += [(mels[name][r, mel_mask[r]], given[r, mel_mask[r]]) for r in range(len(mel_mask))]
        if "decoder_mirrored_pitch" in mels:
            moved = f0["mirrored"] != f0["recorded"]
            for which in mirror_pairs:
                mirror_pairs[which] += [(mels["decoder_mirrored_pitch"][r, moved[r]], f0[which][r, moved[r]])
                                         for r in range(len(mel_mask))]
    report = {"workdir": args.tts_workdir, "step": step, "split": args.split, "utterances": len(texts),
              "sampler": sampler, "decoder_reads_pitch": reads_pitch(config.model),
              "rows": {name: intonation_metrics(audio_of[name], references, texts, preset.sample_rate)
                       for name in rows}}
    for name in rows:
        report["rows"][name]["ripple_agreement"] = agreement(frames_of[name], preset)
        report["rows"][name]["read_from_mel"] = mel_contour_metrics([mel for mel, _ in frames_of[name]], texts,
                                                                    preset)
        for direction in ("rising", "falling"):
            tails = [tail(mel, f0, window) for (mel, f0), text in zip(frames_of[name], texts)
                     if expected_direction(text) == direction]
            report["rows"][name][f"terminal_{direction}"] = {"ripple_agreement": agreement(tails, preset),
                                                              "ripple_depth": agreement(tails, preset, ripple_depth)}
    if reads_pitch(config.model):
        report["mirror_window"] = {f"ripple_agreement_{which}": agreement(pairs, preset)
                                   for which, pairs in mirror_pairs.items()}
        report["follows_mirror"] = follows(audio_of["decoder_recorded_pitch"], audio_of["decoder_mirrored_pitch"],
                                           texts, preset.sample_rate)
    report = json_ready(report)
    if args.out:
        save_report(report, args.out, echo=False)
    print(json.dumps(report, indent=2))


def tail(log_mel: np.ndarray, f0: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The (log-mel, F0) of the voiced frames among the ``frames`` that end at the last voiced one."""
    idx = np.flatnonzero(f0 > 0)
    kept = idx[idx > idx[-1] - frames] if idx.size else idx
    return log_mel[kept], f0[kept]


def agreement(pairs: list[tuple[np.ndarray, np.ndarray]], preset, measure=ripple_agreement) -> float:
    """``measure`` (``ripple_agreement`` or ``ripple_depth``) over the frames of all (log-mel [T,F], F0 [T]) pairs
    together."""
    return measure(np.concatenate([mel for mel, _ in pairs]), np.concatenate([f0 for _, f0 in pairs]), preset)


def follows(plain: list[np.ndarray], mirrored: list[np.ndarray], texts: list[str], sample_rate: int) -> float:
    """Share of the judged utterances (a ? or . ending) whose mirrored-pitch audio turns the other way."""
    turned = []
    for a, b, text in zip(plain, mirrored, texts):
        if not expected_direction(text):
            continue
        try:
            turned.append(terminal_direction(a, sample_rate) != terminal_direction(b, sample_rate))
        except ValueError:  # nothing voiced
            continue
    return float(np.mean(turned)) if turned else float("nan")


if __name__ == "__main__":
    main()
