"""Tiny Vocos-style iSTFT vocoder (0.4M parameters) for "tts_22k" log-mels on the embedded eSpeak corpus.

About 10 min on 2 CPU cores; multi-resolution STFT + log-mel L1 losses, no discriminator.

    jaxspeech train --config configs/vocoder_istft_tiny.py --workdir runs/vocoder_istft_tiny
    jaxspeech evaluate --workdir runs/vocoder_istft_tiny --split test-seen --json

A TTS run vocodes with it through ``jaxspeech.train.recipes.vocoder.vocode(workdir)``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.recipe = "vocoder"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.dir = "data/espeak"  # built by `jaxspeech corpus build` if absent
    c.data.train_split = "train"
    c.data.eval_split = "valid"
    c.data.segment_frames = 32  # 8192 samples, 0.37 s per training segment
    c.data.batch_size = 16
    c.data.num_threads = 2
    c.data.eval_max_frames = 4096  # whole-utterance batches of `evaluate`
    c.data.eval_num_buckets = 4

    c.model = ml_collections.ConfigDict()
    c.model.generator = "istft"
    c.model.preset = "tts_22k"
    c.model.n_mels = 80
    c.model.dim = 96
    c.model.intermediate_dim = 288
    c.model.num_layers = 4
    c.model.kernel_size = 7
    c.model.n_fft = 1024
    # "mel_f0": the head's phase starts from a harmonic excitation at the pitch read off the mel (NSF-style
    # source-filter; with preset "tts_22k_128" for low voices, whose pitch 80 filters alias).
    c.model.source = "none"
    c.model.loss = ml_collections.ConfigDict()
    c.model.loss.resolutions = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))
    c.model.loss.stft_weight = 1.0
    c.model.loss.mel_weight = 1.0
    c.model.adversarial = ml_collections.ConfigDict()
    c.model.adversarial.discriminators = ()  # none: configs/vocoder_gan_tiny.py is this generator with them
    c.model.adversarial.channel_divisor = 8
    c.model.adversarial.adversarial_weight = 1.0
    c.model.adversarial.feature_weight = 2.0

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 100
    c.optim.weight_decay = 1e-2
    c.optim.clip_norm = 1.0
    c.optim.b1 = 0.8
    c.optim.b2 = 0.99

    c.train = ml_collections.ConfigDict()
    c.train.steps = 3000
    c.train.accum_steps = 1
    c.train.compute_dtype = "float32"
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.eval_batches = 4
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3
    c.train.max_nonfinite_streak = 20

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.rules = (("blocks/.*/kernel", ("fsdp",)),)  # regex over param paths -> leading-dim spec
    return c
