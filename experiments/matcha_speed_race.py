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

RTF = wall time / seconds of audio produced; each timed call waits for its outputs (PyTorch's CUDA
stream is synchronised, JAX's arrays are blocked on). The outputs are compared on the same inputs: the
vector field, and Euler synthesis from the same noise (max abs difference), and the frame count.

    python experiments/matcha_speed_race.py --out experiments/results/matcha_speed_race.json
    # on a GPU machine, batch 1 and 16, then the docs section from both reports:
    python experiments/matcha_speed_race.py --torch-device cuda --batch 16 --out race_b16.json --no-docs
    python experiments/matcha_speed_race.py --render race_b1.json race_b16.json
"""

from __future__ import annotations

import argparse
import datetime
import json
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


def _synchronised(fn, torch_device: str):
    """``fn`` followed by a wait for its outputs: PyTorch's CUDA stream (``torch_device`` cuda) or JAX's arrays."""
    import torch

    def call():
        out = fn()
        if torch_device.startswith("cuda"):
            torch.cuda.synchronize()
        return jax.block_until_ready(out)  # leaves that are not JAX arrays are passed over

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--steps", type=int, default=10, help="Euler steps for the RTF rows")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--torch-device", default="cpu", help="cpu, or cuda on a GPU machine (JAX takes its default)")
    parser.add_argument("--out", help="JSON report (experiments/results/matcha_speed_race.json)")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--render", nargs="+", metavar="JSON", help="only write the docs section of these reports")
    args = parser.parse_args()
    if args.render:
        reports = []
        for path in args.render:
            with open(path) as f:
                reports.append(json.load(f))
        write_section(_section(reports[0]), _markdown(reports))
        return
    if not args.out:
        parser.error("--out is needed (or --render)")

    import torch
    from matcha.hifigan.config import v1
    from matcha.hifigan.env import AttrDict
    from matcha.hifigan.models import Generator

    from jaxspeech.train.recipes.tts_fm import load_synthesizer

    torch.set_num_threads(args.torch_threads)

    with matcha_reference.matcha_modules() as module, tempfile.TemporaryDirectory() as directory:
        torch.manual_seed(0)
        model = matcha_reference.matcha_model(module, HPARAMS)
        device = torch.device(args.torch_device)
        checkpoint = os.path.join(directory, "matcha.ckpt")
        torch.save({"state_dict": model.state_dict(), "hyper_parameters": HPARAMS}, checkpoint)
        torch.manual_seed(1)
        generator = Generator(AttrDict(v1)).eval()  # HiFi-GAN V1 as Matcha ships it, random weights
        generator_path = os.path.join(directory, "generator_v1")
        torch.save({"generator": generator.state_dict()}, generator_path)
        generator.remove_weight_norm()
        model, generator = model.to(device), generator.to(device)

        started = time.perf_counter()
        synthesizer, params, _ = load_synthesizer(checkpoint, generator_path)
        import_s = time.perf_counter() - started
        config = synthesizer.config.model
        ids = matcha_import.matcha_tokenizer().encode(phrase(espeak.phonemize(args.text)).text)
        x = torch.tensor(np.tile(ids, (args.batch, 1)), device=device)
        lengths = torch.full((args.batch,), len(ids), device=device)
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
        xt_t, mu_t, mask_t = (torch.tensor(xt, device=device).transpose(1, 2),
                              torch.tensor(mu, device=device).transpose(1, 2),
                              torch.ones(args.batch, 1, padded, device=device))
        t_t = torch.tensor(t, device=device)
        cond = {"mu": jnp.asarray(mu), "speaker": jnp.zeros(args.batch, jnp.int32),
                "mask": jnp.ones((args.batch, padded), bool)}
        network = tts.decoder_network(synthesizer.graphdef, params)
        jax_step = jax.jit(lambda x, t: network(x, t, cond))

        def torch_step():
            with torch.inference_mode():
                return model.decoder.estimator(xt_t, mask_t, mu_t, t_t)

        def jax_step_run():
            return jax_step(jnp.asarray(xt), jnp.asarray(t)).block_until_ready()

        compile_s = {}
        for name, fn in (("step", jax_step_run), ("acoustic", jax_acoustic), ("acoustic_vocoder", jax_full)):
            started = time.perf_counter()
            fn()
            compile_s[name] = time.perf_counter() - started  # first call: tracing + XLA compilation
        field_diff = float(np.abs(np.asarray(jax_step_run()) - torch_step().transpose(1, 2).cpu().numpy()).max())
        with torch.inference_mode():
            grid = torch.linspace(0, 1, args.steps + 1, device=device)
            euler = model.decoder.solve_euler(xt_t, grid, mu_t, mask_t, None, None)
        ours = sample_ode(network, None, jnp.asarray(xt), cond=cond, steps=args.steps, method="euler")
        euler_diff = float(np.abs(np.asarray(ours) - euler.transpose(1, 2).cpu().numpy()).max())
        jax_frames = int(np.asarray(jax_acoustic().mel_mask)[0].sum())

        pairs = {name: tuple(_synchronised(fn, args.torch_device) for fn in fns) for name, fns in
                 {"step": (torch_step, jax_step_run), "acoustic": (torch_acoustic, jax_acoustic),
                  "acoustic_vocoder": (torch_full, jax_full)}.items()}
        for torch_fn, _ in pairs.values():
            torch_fn()  # warm-up
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
    report = {"date": datetime.date.today().isoformat(), "command": command(), "machine": machine(),
              "torch": torch.__version__, "torch_threads": args.torch_threads, "torch_device": str(device),
              "torch_device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "text": args.text, "tokens": len(ids), "batch": args.batch, "steps": args.steps,
              "repeats": args.repeats, "frames": {"pytorch": frames, "jaxspeech": jax_frames}, "audio_s": audio_s,
              "parameters": int(sum(p.numel() for p in model.parameters())),
              "max_abs_diff": {"vector_field": field_diff, f"euler_{args.steps}_steps": euler_diff},
              "import_s": import_s, "jaxspeech_compile_s": compile_s, "rows": rows, "config": config.to_dict()}
    save_report(report, args.out)
    if not args.no_docs:
        write_section(_section(report), _markdown([report]))


def _section(report: dict) -> str:
    """The docs heading: one section per kind of machine (CPU, or the GPU's name)."""
    return SECTION if report.get("torch_device", "cpu") == "cpu" else f"{SECTION[:-1]}, on a GPU)"


def _markdown(reports: list[dict]) -> str:
    """The docs section of one or more reports of one machine (e.g. batch 1 and batch 16)."""
    first = reports[0]
    labels = {"step": "one ODE step (vector field)", "acoustic": f"acoustic model, {first['steps']} steps",
              "acoustic_vocoder": f"acoustic model + HiFi-GAN V1, {first['steps']} steps"}
    torch_on = (f"{first['torch_threads']} threads" if first.get("torch_device", "cpu") == "cpu"
                else first["torch_device_name"])
    lines = [_section(first), ""]
    lines += [f"Command: `{r.get('command', 'python experiments/matcha_speed_race.py')}`  " for r in reports]
    lines += [f"Machine: {first['machine']}, torch {first['torch']} on {torch_on}  ", f"Date: {first['date']}", "",
              f"Matcha-TTS's default architecture ({first['parameters'] / 1e6:.1f} M parameters, random weights) run "
              "by the `matcha-tts` package and by jaxspeech from the same checkpoint; "
              f"{first['tokens']} tokens, {first['frames']['pytorch']} frames "
              f"({first['audio_s'] / first['batch']:.2f} s of audio per utterance); medians of {first['repeats']} runs "
              "taken in turn. jaxspeech's synthesis pads "
              "frames to a multiple of 64 (one compilation per bucket), Matcha's to a multiple of 4."
              + ("" if first.get("torch_device", "cpu") == "cpu" else
                 " On a GPU both frameworks run float32 products at their default precision (TF32 on Hopper where "
                 "allowed: XLA's dots and convolutions, cuDNN's convolutions), so the outputs agree less closely "
                 "than on a CPU."), ""]
    for r in reports:
        diff, compile_s = r["max_abs_diff"], r["jaxspeech_compile_s"]
        euler = diff[f"euler_{r['steps']}_steps"]
        lines.append(f"Batch {r['batch']}: vector field within {diff['vector_field']:.1e}, "
                     f"{r['steps']}-step Euler synthesis from the same noise within "
                     f"{euler:.1e} "
                     f"(max abs, normalised mel units); frames {r['frames']['pytorch']} (PyTorch) vs "
                     f"{r['frames']['jaxspeech']} (jaxspeech); jaxspeech compile time (first call) step "
                     f"{compile_s['step']:.1f} s, acoustic {compile_s['acoustic']:.1f} s, with vocoder "
                     f"{compile_s['acoustic_vocoder']:.1f} s; checkpoint import {r['import_s']:.1f} s.")
    lines += ["", "| batch | row | PyTorch | jaxspeech | speed-up | RTF PyTorch | RTF jaxspeech |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in reports:
        for name, row in r["rows"].items():
            rtf = (f"{row['pytorch_rtf']:.4f} | {row['jaxspeech_rtf']:.4f} |" if "pytorch_rtf" in row else "- | - |")
            lines.append(f"| {r['batch']} | {labels[name]} | {1000 * row['pytorch_s']:.1f} ms | "
                         f"{1000 * row['jaxspeech_s']:.1f} ms | {row['speedup']:.2f}x | {rtf}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
