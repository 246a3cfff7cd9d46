"""Speed race, side by side in one run: Matcha-TTS (the ``matcha-tts`` package, PyTorch) against the same
checkpoint imported into jaxspeech (``models.tts.matcha_import``), issue 19.

Matcha's default architecture (its LJSpeech shape: encoder 192 x 6, U-Net (256, 256) with SnakeBeta
blocks), random weights, saved as a Lightning checkpoint and imported; HiFi-GAN V1 (random weights,
Matcha's generator) for the vocoder rows, imported the same way. One fixed sentence, eSpeak NG phonemes
in Matcha's symbol table, batch ``--batch`` copies. Rows, each the median of ``--repeats`` timed runs
taken in turn (PyTorch, then jaxspeech) after warm-up; jaxspeech's compile time separately:

- one ODE step: the decoder's vector field at the synthesized length (padded to a multiple of 4, as
  Matcha pads), no padding in the batch, so both compute the same function;
- acoustic model: text ids -> mel at ``--steps`` Euler steps (``MatchaTTS.synthesise`` vs
  ``Synthesizer.generate``, which pads frames to a multiple of 64 and tokens to 16);
- acoustic model + vocoder: the same, then HiFi-GAN V1.

RTF = wall time / seconds of audio produced. The outputs are compared on the same inputs: the vector
field, and Euler synthesis from the same noise (max abs difference), and the frame count.

    python experiments/matcha_speed_race.py --out experiments/results/matcha_speed_race.json
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from benchmark_docs import command, machine, save_report, write_section

from jaxspeech.data import espeak
from jaxspeech.models import tts
from jaxspeech.models.tts import matcha_import, matcha_reference
from jaxspeech.samplers import sample_ode
from jaxspeech.text.phrasing import phrase

SECTION = "## Matcha-TTS speed race: PyTorch package vs the imported checkpoint (issue 19)"
TEXT = "The careful doctor watched a towel, a plate and buttons, then asked whether the shop was open."
HPARAMS = dict(  # Matcha-TTS's configs/model/matcha.yaml (LJSpeech)
    n_vocab=len(matcha_import.MATCHA_SYMBOLS), n_spks=1, spk_emb_dim=64, n_feats=80, out_size=None, prior_loss=True,
    use_precomputed_durations=False, data_statistics={"mel_mean": -5.536622, "mel_std": 2.116101},
    encoder=dict(encoder_type="RoPE Encoder",
                 encoder_params=dict(n_feats=80, n_channels=192, filter_channels=768, filter_channels_dp=256,
                                     n_heads=2, n_layers=6, kernel_size=3, p_dropout=0.1, spk_emb_dim=64, n_spks=1,
                                     prenet=True),
                 duration_predictor_params=dict(filter_channels_dp=256, kernel_size=3, p_dropout=0.1)),
    decoder=dict(channels=[256, 256], dropout=0.05, attention_head_dim=64, n_blocks=1, num_mid_blocks=2, num_heads=2,
                 act_fn="snakebeta"),
    cfm=dict(name="CFM", solver="euler", sigma_min=1e-4),
)  # fmt: skip
HOP, SAMPLE_RATE = 256, 22050


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--steps", type=int, default=10, help="Euler steps for the RTF rows")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="JSON report (experiments/results/matcha_speed_race.json)")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()

    import torch
    from matcha.hifigan.config import v1
    from matcha.hifigan.env import AttrDict
    from matcha.hifigan.models import Generator

    from jaxspeech.train.recipes.tts_fm import load_synthesizer

    torch.set_num_threads(args.torch_threads)

    with matcha_reference.matcha_modules() as module, tempfile.TemporaryDirectory() as directory:
        torch.manual_seed(0)
        model = matcha_reference.matcha_model(module, HPARAMS)
        checkpoint = os.path.join(directory, "matcha.ckpt")
        torch.save({"state_dict": model.state_dict(), "hyper_parameters": HPARAMS}, checkpoint)
        torch.manual_seed(1)
        generator = Generator(AttrDict(v1)).eval()  # HiFi-GAN V1 as Matcha ships it, random weights
        generator_path = os.path.join(directory, "generator_v1")
        torch.save({"generator": generator.state_dict()}, generator_path)
        generator.remove_weight_norm()

        started = time.perf_counter()
        synthesizer, params, _ = load_synthesizer(checkpoint, generator_path)
        import_s = time.perf_counter() - started
        config = synthesizer.config.model
        ids = matcha_import.matcha_tokenizer().encode(phrase(espeak.phonemize(args.text)).text)
        x = torch.tensor(np.tile(ids, (args.batch, 1)))
        lengths = torch.full((args.batch,), len(ids))
        items = [synthesizer.item(args.text)] * args.batch
        key = jax.random.key(0)
        sampler = dict(steps=args.steps, temperature=0.667)

        def torch_acoustic():
            with torch.inference_mode():
                return model.synthesise(x, lengths, args.steps, 0.667)

        def torch_full():
            out = torch_acoustic()
            with torch.inference_mode():
                return generator(out["mel"])

        def jax_acoustic():
            return synthesizer.generate(params, items, key=key, **sampler)[1]

        def jax_full():
            return synthesizer.synthesize(params, items, key=key, **sampler)

        # One ODE step on the synthesized length (padded to 4 as Matcha pads), same inputs on both sides.
        reference = torch_acoustic()
        frames = int(reference["mel_lengths"][0])
        padded = -(-frames // 4) * 4
        rng = np.random.default_rng(0)
        xt, mu = (rng.standard_normal((args.batch, padded, 80)).astype(np.float32) for _ in range(2))
        t = np.full((args.batch,), 0.5, np.float32)
        xt_t, mu_t, mask_t = (torch.tensor(xt).transpose(1, 2), torch.tensor(mu).transpose(1, 2),
                              torch.ones(args.batch, 1, padded))
        cond = {"mu": jnp.asarray(mu), "speaker": jnp.zeros(args.batch, jnp.int32),
                "mask": jnp.ones((args.batch, padded), bool)}
        network = tts.decoder_network(synthesizer.graphdef, params)
        jax_step = jax.jit(lambda x, t: network(x, t, cond))

        def torch_step():
            with torch.inference_mode():
                return model.decoder.estimator(xt_t, mask_t, mu_t, torch.tensor(t))

        def jax_step_run():
            return jax_step(jnp.asarray(xt), jnp.asarray(t)).block_until_ready()

        compile_s = {}
        for name, fn in (("step", jax_step_run), ("acoustic", jax_acoustic), ("acoustic_vocoder", jax_full)):
            started = time.perf_counter()
            fn()
            compile_s[name] = time.perf_counter() - started  # first call: tracing + XLA compilation
        field_diff = float(np.abs(np.asarray(jax_step_run()) - torch_step().transpose(1, 2).numpy()).max())
        with torch.inference_mode():
            euler = model.decoder.solve_euler(xt_t, torch.linspace(0, 1, args.steps + 1), mu_t, mask_t, None, None)
        ours = sample_ode(network, None, jnp.asarray(xt), cond=cond, steps=args.steps, method="euler")
        euler_diff = float(np.abs(np.asarray(ours) - euler.transpose(1, 2).numpy()).max())
        jax_frames = int(np.asarray(jax_acoustic().mel_mask)[0].sum())

        pairs = {"step": (torch_step, jax_step_run), "acoustic": (torch_acoustic, jax_acoustic),
                 "acoustic_vocoder": (torch_full, jax_full)}
        for fn in (torch_step, torch_acoustic, torch_full):
            fn()  # warm-up
        timings = {name: {"pytorch": [], "jaxspeech": []} for name in pairs}
        for _ in range(args.repeats):
            for name, (torch_fn, jax_fn) in pairs.items():
                timings[name]["pytorch"].append(_timed(torch_fn))
                timings[name]["jaxspeech"].append(_timed(jax_fn))
        audio_s = args.batch * frames * HOP / SAMPLE_RATE
        rows = {}
        for name, t in timings.items():
            p, j = statistics.median(t["pytorch"]), statistics.median(t["jaxspeech"])
            rows[name] = {"pytorch_s": p, "jaxspeech_s": j, "speedup": p / j,
                          **({} if name == "step" else {"pytorch_rtf": p / audio_s, "jaxspeech_rtf": j / audio_s})}
    report = {"date": datetime.date.today().isoformat(), "machine": machine(), "torch": torch.__version__,
              "torch_threads": args.torch_threads, "text": args.text, "tokens": len(ids), "batch": args.batch,
              "steps": args.steps, "repeats": args.repeats, "frames": {"pytorch": frames, "jaxspeech": jax_frames},
              "audio_s": audio_s, "parameters": int(sum(p.numel() for p in model.parameters())),
              "max_abs_diff": {"vector_field": field_diff, f"euler_{args.steps}_steps": euler_diff},
              "import_s": import_s, "jaxspeech_compile_s": compile_s, "rows": rows, "config": config.to_dict()}
    save_report(report, args.out)
    if args.no_docs:
        return
    labels = {"step": "one ODE step (vector field)", "acoustic": f"acoustic model, {args.steps} steps",
              "acoustic_vocoder": f"acoustic model + HiFi-GAN V1, {args.steps} steps"}
    table = "\n".join(
        f"| {labels[name]} | {1000 * r['pytorch_s']:.0f} ms | {1000 * r['jaxspeech_s']:.0f} ms | {r['speedup']:.2f}x | "
        + (f"{r['pytorch_rtf']:.3f} | {r['jaxspeech_rtf']:.3f} |" if "pytorch_rtf" in r else "- | - |")
        for name, r in rows.items())
    write_section(SECTION, f"""{SECTION}

Command: `{command()}`  
Machine: {report['machine']}, torch {report['torch']} with {args.torch_threads} threads  
Date: {report['date']}

Matcha-TTS's default architecture ({report['parameters'] / 1e6:.1f} M parameters, random weights) run by the
`matcha-tts` package and by jaxspeech from the same checkpoint; batch {args.batch}, {len(ids)} tokens,
{frames} frames ({audio_s:.2f} s of audio); medians of {args.repeats} runs taken in turn. Same inputs give the
same outputs: vector field within {field_diff:.1e}, {args.steps}-step Euler synthesis from the same noise within
{euler_diff:.1e} (max abs, normalised mel units); frames {frames} (PyTorch) vs {jax_frames} (jaxspeech).
jaxspeech compile time (first call): step {compile_s['step']:.1f} s, acoustic {compile_s['acoustic']:.1f} s,
with vocoder {compile_s['acoustic_vocoder']:.1f} s; checkpoint import {import_s:.1f} s. jaxspeech's synthesis
pads frames to a multiple of 64 (one compilation per bucket), Matcha's to a multiple of 4.

| row | PyTorch | jaxspeech | speed-up | RTF PyTorch | RTF jaxspeech |
| --- | --- | --- | --- | --- | --- |
{table}
""")


if __name__ == "__main__":
    main()
