"""Tiny Matcha/ProsodyFM flow-matching TTS on the embedded eSpeak corpus (2 CPU cores).

Phrase-break tokens, terminal intonation encoder and predictor, 1D U-Net decoder (set
``--config.model.decoder.network=dit`` for the adaLN-zero DiT), frame-level pitch predictor (whose F0 the
decoder reads), and Griffin-Lim on the model's mel by default (``--config.synth.vocoder=harmonic`` renders
the predicted F0 with the harmonic-plus-noise vocoder). The decoder network is trained with
``model.decoder.objective`` (flow matching; ``jaxspeech.objectives``). Settings chosen by measurement say
which split chose them; the figures are in docs/benchmarks.md.

    jaxspeech train --config configs/tts_fm_tiny.py --workdir runs/tts_fm_tiny
    jaxspeech train --config configs/asr_ctc_tiny.py --workdir runs/asr_ctc_tiny   # for asr_cer
    jaxspeech evaluate --workdir runs/tts_fm_tiny --split test-seen --json
    jaxspeech synthesize --workdir runs/tts_fm_tiny --text "Was the clock too shiny?" --out out.wav
"""

import ml_collections

from jaxspeech.models import tts


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.recipe = "tts_fm"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.dir = "data/espeak"  # built by `jaxspeech corpus build` if absent
    c.data.train_split = "train"
    c.data.eval_split = "valid"
    # 128 filters rather than HiFi-GAN's 80: below 1 kHz 80 filters sit 37 Hz apart and cannot hold the harmonics
    # of F0 under 75 Hz, where eSpeak's low voices end statements (audio.pitch_comb.lowest_resolved_f0). Chosen
    # on valid, 10000 steps each: Griffin-Lim copy synthesis of the recordings keeps the terminal contour in
    # 98.7% vs 86.8% (experiments/compare_vocoders.py --preset); the TTS's Griffin-Lim contour 73.7% vs 61.8%,
    # MCD (tts_22k cepstra) 1.50 vs 1.58 dB, ASR CER 8.6% vs 7.5% (worse). A vocoder trained on tts_22k mels
    # does not fit: train it on this preset, or set data.preset back.
    c.data.preset = "tts_22k_128"
    c.data.max_frames = 4096  # mel frames per batch, padding included
    c.data.num_buckets = 3  # one train-step compilation per bucket (about 40 s each on 2 cores)
    c.data.max_seconds = 20.0
    c.data.max_boundaries = 4  # phrase boundaries per utterance with a contour (the last ones)
    c.data.cache_features = True
    c.data.num_threads = 2
    # Every batch's rows are a multiple of this, whatever the device count: the global batch is the config's.
    # The mesh's batch devices x train.accum_steps must divide it (e.g. 8 for 8 data-parallel devices).
    c.data.row_multiple = 1

    # vocab_size, num_speakers, break_token, mel_mean and mel_std are set from the training split.
    c.model = tts.default_config()
    m = c.model
    m.encoder.update(dict(d_model=128, num_layers=3, num_heads=2, ff_mult=2, prenet_layers=2, prenet_kernel=5,
                          dropout=0.05))
    m.duration_predictor.update(dict(channels=128, kernel=3, dropout=0.05))
    m.intonation.update(dict(num_tokens=6, contour_points=32, lstm_hidden=64, attention_dim=128, num_heads=4))
    # Decode the contour back from the style vector (relative squared error, weight 1): without it the
    # token attention stayed near uniform and the style hardly differed between questions and statements.
    m.intonation.reconstruction_weight = 1.0
    # Frame-level F0 and voicing, predicted from the text, for the decoder and the harmonic vocoder. The decoder
    # reads it as the harmonics' pattern on the mel filters (decoder_input "harmonic_comb"): chosen on valid after
    # 10000 steps (jaxspeech evaluate --split valid; experiments/diagnose_decoder_pitch.py), against the
    # normalised log-F0 ("log_f0"): Griffin-Lim contour 61.8% vs 55.3%, ASR CER 7.5% vs 8.6%, MCD 1.58 vs 1.69 dB;
    # the mel's harmonic ripple agrees 0.73 vs 0.45 with the recording's pitch (the recording's own mel: 0.78).
    m.pitch.update(dict(enabled=True, channels=128, layers=3, kernel=5, dropout=0.05, condition_decoder=True,
                        decoder_input="harmonic_comb"))
    m.decoder.speaker_dim = 32
    m.decoder.unet.update(dict(channels=(64, 64), time_dim=128, num_blocks=1, num_mid_blocks=1, num_heads=2,
                               ff_mult=2, norm_groups=8, dropout=0.0))
    m.decoder.dit.update(dict(d_model=128, num_layers=4, num_heads=2, ff_mult=2, dropout=0.0))
    m.decoder.cond_drop_prob = 0.1
    # Matcha's out_size: the decoder trains on one random 64-frame (0.74 s) window per utterance
    # (utterances average 2.4 s).
    m.decoder.segment_frames = 64

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 200
    c.optim.weight_decay = 1e-2
    c.optim.clip_norm = 1.0
    c.optim.b1 = 0.9
    c.optim.b2 = 0.99

    c.train = ml_collections.ConfigDict()
    c.train.steps = 10000
    c.train.accum_steps = 1
    c.train.compute_dtype = "float32"
    c.train.log_every = 25
    c.train.eval_every = 500
    c.train.eval_batches = 2
    c.train.checkpoint_every = 250
    c.train.keep_checkpoints = 3
    c.train.max_nonfinite_streak = 20

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.rules = (("decoder/.*/kernel", ("fsdp",)),)  # regex over param paths -> leading-dim spec

    # Synthesis settings (sampler: the objective's sampling options), all chosen on valid with ASR CER first,
    # then MCD (docs/benchmarks.md, "Synthesis settings chosen on valid"). The vocoder (2026-12-02): Griffin-Lim
    # on the model's mel is more intelligible and closer to the recording than harmonic-plus-noise at the
    # predicted F0, which keeps the terminal contour better. Temperature and steps (2026-12-03): far less
    # noise than Matcha's 0.667 suits this tiny model; 5 or 20 Euler steps are no better than 10. Durations
    # (2026-12-03): Matcha's ceil beat round on CER and MCD for both the 5000- and the 10000-step model.
    c.synth = ml_collections.ConfigDict()
    c.synth.sampler = ml_collections.ConfigDict(dict(steps=10, method="euler", temperature=0.1, sway=False))
    c.synth.guidance = 0.0  # classifier-free guidance scale; 0 = off
    c.synth.duration_rounding = "ceil"  # or "round" (at least one frame per token either way)
    c.synth.max_symbols = 160  # longer texts are cut at phrase boundaries and concatenated
    c.synth.batch_size = 16  # utterances synthesized together (evaluate, --text-file)
    c.synth.vocoder = "griffin-lim"  # or "harmonic" (harmonic-plus-noise at the predicted F0), or the workdir
    # of configs/vocoder_istft_tiny.py
    # Harmonic-plus-noise (jaxspeech.audio.harmonic): noise share of voiced frames, then Griffin-Lim refinement
    # from the harmonic phase, above below_hz only in voiced frames (below, the harmonics keep the predicted
    # pitch), over the whole band in unvoiced ones.
    c.synth.harmonic = ml_collections.ConfigDict(dict(voiced_noise=0.1, griffin_lim_iterations=4, below_hz=2000.0,
                                                      refine_unvoiced=True))
    c.synth.griffin_lim = ml_collections.ConfigDict(dict(iterations=32))

    c.eval = ml_collections.ConfigDict()
    c.eval.asr_workdir = "runs/asr_ctc_tiny"  # recognizer for asr_cer (evaluate --asr-workdir overrides)
    c.eval.rtf_utterances = 5
    c.eval.rtf_repeats = 3
    return c
