"""Where does the terminal intonation get lost? Text side vs decoder + vocoder, for a trained TTS workdir.

    python experiments/diagnose_intonation.py --tts-workdir runs/tts_fm_tiny [--split test-seen]

For every utterance of the split (batched as in validation) it encodes the text twice: with the
recording's boundary contours (the reference encoder's style, as in training) and without (the
text-side predictor's style, as in synthesis), and compares the token weights of the two. With a
contour head (``model.intonation.reconstruction_weight`` > 0) it also decodes each style back to a
contour and reports the relative squared error against the recording's contour, and how often the
terminal slope of the predicted style's contour has the recording's sign (``audio.f0.terminal_slope``,
the least-squares slope the audio metrics use, over the second half of the last boundary's contour).
If that agreement is high while ``bench_tts.py``'s synthesized contour accuracy stays low, the text
side is right and the decoder or the vocoder loses the pitch movement. Prints one JSON object; measures
nothing about audio.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from jaxspeech.audio.f0 import terminal_slope
from jaxspeech.data.readers import load_records
from jaxspeech.models import tts
from jaxspeech.train.recipes.tts_fm import load_synthesizer, ordered_batches


def second_half_slopes(contours: np.ndarray) -> np.ndarray:
    """[M] least-squares slopes of [M,C] contours over their last C/2 points (one point per unit time)."""
    points = contours.shape[1]

    def slope(contour):
        return terminal_slope(contour, jnp.ones(points, bool), 0, points, frame_rate=1.0, window_ms=500.0 * points)

    return np.asarray(jax.vmap(slope)(jnp.asarray(contours)))


def entropy(weights: np.ndarray) -> float:
    return float(-(weights * np.log(np.maximum(weights, 1e-9))).sum(-1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tts-workdir", required=True)
    parser.add_argument("--split", default="test-seen")
    args = parser.parse_args()
    synthesizer, params, step = load_synthesizer(args.tts_workdir)
    config, d = synthesizer.config, synthesizer.config.data
    dataset, loader = ordered_batches(config, synthesizer.tokenizer, synthesizer.speakers,
                                      load_records(d.dir, split=args.split))
    errors = {"reference": [], "predicted": []}
    weights = {"reference": [], "predicted": []}
    last = {"recorded": [], "predicted": []}  # the last boundary's contour per utterance
    for _ in range(loader.batches_per_epoch):
        batch = next(loader)
        inputs = (jnp.asarray(batch["tokens"]), jnp.asarray(batch["token_mask"]), jnp.asarray(batch["speaker"]))
        boundaries = {name: jnp.asarray(batch[name]) for name in tts.BOUNDARY_KEYS}
        contour, present = np.asarray(batch["boundary_contour"]), np.asarray(batch["boundary_mask"])
        encoded = {
            "reference": tts.encode(synthesizer.graphdef, params, *inputs, boundaries, contour=jnp.asarray(contour)),
            "predicted": tts.encode(synthesizer.graphdef, params, *inputs, boundaries),
        }
        for name, enc in encoded.items():
            weights[name].append(np.asarray(enc["intonation_weights"])[present])
            if "intonation_contour" in enc:
                decoded = np.asarray(enc["intonation_contour"])
                errors[name].append((np.square(decoded - contour)[present].sum(), np.square(contour)[present].sum()))
        if "intonation_contour" in encoded["predicted"]:
            decoded = np.asarray(encoded["predicted"]["intonation_contour"])
            for row in range(contour.shape[0]):
                kept = np.flatnonzero(present[row])
                if kept.size:
                    last["recorded"].append(contour[row, kept[-1]])
                    last["predicted"].append(decoded[row, kept[-1]])
    report = {"workdir": args.tts_workdir, "step": step, "split": args.split, "utterances": len(dataset),
              "token_weight_entropy_nats": {k: entropy(np.concatenate(v)) for k, v in weights.items()},
              "uniform_entropy_nats": float(np.log(config.model.intonation.num_tokens)),
              "token_weight_max": {k: float(np.concatenate(v).max(-1).mean()) for k, v in weights.items()}}
    if last["recorded"]:
        recorded, predicted = (second_half_slopes(np.stack(last[name])) for name in ("recorded", "predicted"))
        report["relative_contour_error"] = {k: float(sum(e for e, _ in v) / sum(t for _, t in v))
                                            for k, v in errors.items()}
        report["terminal_slope_sign_agreement"] = float(np.mean(np.sign(recorded) == np.sign(predicted)))
        report["recordings_rising_share"] = float(np.mean(recorded > 0))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
