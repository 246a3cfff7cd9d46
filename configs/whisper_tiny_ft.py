"""Whisper-architecture character recognizer (0.7M parameters) on the embedded eSpeak corpus, from scratch
on 2 CPU cores; or fine-tuning of a transformers Whisper checkpoint; or sparse fine-tuning.

Measured on test-seen (greedy, `python experiments/sparse_whisper.py`, 2 CPU cores): without
regularisation, CER 68% after 1800 steps (underfitting) and 57% after 6000 steps, where the training
cross-entropy is 0.001 (the model memorised the 1292 training utterances). With the SpecAugment and
dropout 0.1 below, 6000 steps (21 min): CER 67%, training cross-entropy flat at 0.70 over the last
2000 steps. Neither generalises: an attention decoder from scratch needs more than this corpus's
1292 utterances (a larger `jaxspeech corpus build --size` is the next thing to try). On a 4x corpus
(`--size 6080`), 6000 steps: CER 80.0% with cross-entropy alone, 7.2% with `loss.ctc_weight=0.3`, the
default now (joint CTC-attention: the CTC term on the encoder makes the decoder's attention read the
audio). For a transformers checkpoint the term is untested: `--config.loss.ctc_weight=0` fine-tunes
with Whisper's own objective alone.

    jaxspeech train --config configs/whisper_tiny_ft.py --workdir runs/whisper_tiny
    jaxspeech evaluate --workdir runs/whisper_tiny --split test-seen --json

Fine-tune a transformers Whisper directory (config.json, weights, tokenizer files) instead:

    jaxspeech train --config configs/whisper_tiny_ft.py --workdir runs/whisper_ft \\
        --config.model.checkpoint=path/to/whisper-tiny --config.optim.lr=1e-4

Encoder-heavy/decoder-light (most of the compute in one pass over the audio, little per token):

    --config.model.encoder_layers=4 --config.model.decoder_layers=1

Sparse fine-tuning of a dense run to 75% with SquareHead distillation against it:

    jaxspeech train --config configs/whisper_tiny_ft.py --workdir runs/whisper_sparse75 \\
        --config.sparsity.dense_workdir=runs/whisper_tiny --config.sparsity.target=0.75 \\
        --config.sparsity.distill=squarehead --config.train.steps=1000 --config.sparsity.end_step=700 \\
        --config.optim.lr=1e-3
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.recipe = "whisper_asr"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.dir = "data/espeak"  # built by `jaxspeech corpus build`
    c.data.train_split = "train"
    c.data.eval_split = "valid"
    c.data.max_frames = 3072  # frames per batch, padding included (100 frames/s)
    c.data.num_buckets = 4
    c.data.max_seconds = 8.0
    c.data.cache_features = True
    c.data.num_threads = 2
    # Every batch's rows are a multiple of this, whatever the device count: the global batch is the config's.
    # The mesh's batch devices x train.accum_steps must divide it (e.g. 8 for 8 data-parallel devices).
    c.data.row_multiple = 1

    c.model = ml_collections.ConfigDict()
    c.model.checkpoint = ""  # a transformers Whisper directory; empty = from scratch with the fields below
    c.model.preset = "whisper_80"  # log-mel front end (Whisper's, 16 kHz, 80 mels)
    c.model.d_model = 96
    c.model.encoder_layers = 3
    c.model.decoder_layers = 2
    c.model.num_heads = 4
    c.model.ffn_mult = 4
    c.model.max_source_positions = 400  # encoder positions: 8 s of audio, not Whisper's 30 s (1500)
    c.model.max_target_positions = 128  # prefix + characters + eot
    c.model.dropout = 0.1
    c.model.specaugment = ml_collections.ConfigDict()  # on the training log-mels; zero masks = off
    c.model.specaugment.num_freq_masks = 2
    c.model.specaugment.max_freq_width = 10
    c.model.specaugment.num_time_masks = 2
    c.model.specaugment.max_time_ratio = 0.05

    c.loss = ml_collections.ConfigDict()
    c.loss.kind = "ce"  # "ce" | "emo" (EMO combined with cross-entropy)
    c.loss.emo_combine = "mle_scale"  # "mle_scale" | "emo_scale"
    c.loss.ctc_weight = 0.3  # > 0: plus this x a CTC loss on the encoder (joint CTC-attention training)

    c.sparsity = ml_collections.ConfigDict()
    c.sparsity.target = 0.0  # > 0: sparse fine-tuning of sparsity.dense_workdir to this fraction of prunable weights
    c.sparsity.dense_workdir = ""  # its latest checkpoint starts the student (and is the SquareHead teacher)
    c.sparsity.distill = "none"  # "none" | "squarehead"
    c.sparsity.squarehead_weight = 1.0
    c.sparsity.kl_weight = 0.0
    c.sparsity.begin_step = 0  # cubic schedule from 0 at begin_step to target at end_step
    c.sparsity.end_step = 700
    c.sparsity.frequency = 25  # steps between mask updates
    c.sparsity.scope = "layer"  # "layer" | "global" magnitude ranking

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 3e-3
    c.optim.warmup_steps = 200
    c.optim.weight_decay = 1e-2
    c.optim.clip_norm = 1.0
    c.optim.b1 = 0.9
    c.optim.b2 = 0.98

    c.train = ml_collections.ConfigDict()
    c.train.steps = 6000
    c.train.accum_steps = 1
    c.train.compute_dtype = "float32"
    c.train.log_every = 25
    c.train.eval_every = 600
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3
    c.train.max_nonfinite_streak = 20

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.rules = (("encoder/layers/.*/kernel", ("fsdp",)),)  # regex over param paths -> leading-dim spec

    c.decode = ml_collections.ConfigDict()
    c.decode.beam_size = 0  # 0 = greedy; > 0 = beam search
    c.decode.max_new_tokens = 100
    return c
