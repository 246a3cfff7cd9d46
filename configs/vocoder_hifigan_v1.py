"""HiFi-GAN V1 (Kong et al. 2020) at its published size, for "tts_22k" log-mels: a GPU config.

Generator V1 (13.9M parameters, upsampling 8x8x2x2), multi-period and multi-scale discriminators
at full width; log-mel L1 x 45, least-squares adversarial, feature matching x 2; AdamW
(beta 0.8, 0.99, weight decay 0.01) at 2e-4, batch 16 segments of 8192 samples (HiFi-GAN's
config_v1.json; its per-epoch exponential decay is a cosine decay here). On this 2-core CPU a step
takes tens of seconds: train it on a GPU, or fine-tune from an imported checkpoint.

    jaxspeech train --config configs/vocoder_hifigan_v1.py --workdir runs/vocoder_hifigan_v1
"""

import ml_collections

from jaxspeech.train.config import config_beside


def get_config() -> ml_collections.ConfigDict:
    c = config_beside(__file__, "vocoder_gan_tiny.py")
    m = c.model
    for name in ("dim", "intermediate_dim", "num_layers", "kernel_size", "n_fft"):
        del m[name]
    m.generator = "hifigan"
    m.upsample_rates = (8, 8, 2, 2)
    m.upsample_kernel_sizes = (16, 16, 4, 4)
    m.upsample_initial_channel = 512
    m.resblock = "1"
    m.resblock_kernel_sizes = (3, 7, 11)
    m.resblock_dilation_sizes = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    m.loss.stft_weight = 0.0  # HiFi-GAN's objective: mel L1 x 45 only (its full-width MPD + MSD see the harmonics)
    m.adversarial.discriminators = ("mpd", "msd")
    m.adversarial.channel_divisor = 1
    c.optim.lr = 2e-4
    c.optim.warmup_steps = 0
    c.train.steps = 500_000
    c.train.eval_every = 5000
    c.train.checkpoint_every = 5000
    c.mesh.rules = ()
    return c
