"""Tiny Conformer-CTC character recognizer (0.9M parameters) on the embedded eSpeak corpus, ~10 min on 2 CPU cores.

    jaxspeech train --config configs/asr_ctc_tiny.py --workdir runs/asr_ctc_tiny
    jaxspeech evaluate --workdir runs/asr_ctc_tiny --split test-unseen --json
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.recipe = "ctc_asr"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.dir = "data/espeak"  # built by `jaxspeech corpus build` if absent
    c.data.corpus_size = 0  # utterances when building; 0 = the default (about one hour)
    c.data.train_split = "train"
    c.data.eval_split = "valid"
    c.data.preset = "tts_22k"
    c.data.max_frames = 3072  # frames per batch, padding included
    c.data.num_buckets = 8
    c.data.max_seconds = 20.0
    c.data.cache_features = True
    c.data.num_threads = 2
    # Every batch's rows are a multiple of this, whatever the device count: the global batch is the config's.
    # The mesh's batch devices x train.accum_steps must divide it (e.g. 8 for 8 data-parallel devices).
    c.data.row_multiple = 1

    c.model = ml_collections.ConfigDict()
    c.model.n_mels = 80
    c.model.vocab_size = 0  # set from the tokenizer built on the training split
    c.model.d_model = 96
    c.model.num_layers = 4
    c.model.num_heads = 4
    c.model.ff_mult = 4
    c.model.conv_kernel = 15
    c.model.dropout = 0.05
    c.model.subsampling_channels = 16
    c.model.ctc_upsample = 2  # CTC at 43 frames/s: fast eSpeak speech outruns 21.5 encoder frames/s
    c.model.specaugment = ml_collections.ConfigDict()
    c.model.specaugment.num_freq_masks = 2
    c.model.specaugment.max_freq_width = 10
    c.model.specaugment.num_time_masks = 1
    c.model.specaugment.max_time_ratio = 0.05

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 3e-3
    c.optim.warmup_steps = 150
    c.optim.weight_decay = 1e-2
    c.optim.clip_norm = 5.0
    c.optim.b1 = 0.9
    c.optim.b2 = 0.98

    c.train = ml_collections.ConfigDict()
    c.train.steps = 3000
    c.train.accum_steps = 1
    c.train.compute_dtype = "float32"
    c.train.log_every = 25
    c.train.eval_every = 750
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3
    c.train.max_nonfinite_streak = 20

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.rules = (("encoder/blocks/.*/kernel", ("fsdp",)),)  # regex over param paths -> leading-dim spec

    c.decode = ml_collections.ConfigDict()
    c.decode.beam_size = 0  # 0 = greedy; > 0 = CTC prefix beam search
    return c
