"""Tiny iSTFT vocoder trained against HiFi-GAN's discriminators, for "tts_22k" log-mels on the embedded corpus.

The generator of configs/vocoder_istft_tiny.py (Vocos-style, 0.4M parameters) with HiFi-GAN's
objective (log-mel L1 x 45, least-squares adversarial, feature matching x 2) against the multi-period
discriminator at 1/8 of its published widths (CPU-sized), plus the multi-resolution STFT loss x 45:
without it the generator renders voiced speech at the wrong pitch (copy synthesis on valid, 12000
steps: F0 error 124 -> 16 cents, terminal contour 64.5% -> 84.2%, MCD 0.80 -> 0.85 dB, CER 6.1% -> 6.5%;
80 mel bands do not resolve harmonic spacing, and a narrow MPD does not make up for it in 12000 steps).
The multi-scale discriminator is left out here: with it a step takes 3.6 s on this 2-core CPU even at
1/8 width (its grouped convolutions' gradients), without it 174 ms (measured with the STFT term off);
add it with ``--config.model.adversarial.discriminators="('mpd', 'msd')"`` where that is affordable.

    jaxspeech train --config configs/vocoder_gan_tiny.py --workdir runs/vocoder_gan_tiny
    jaxspeech evaluate --workdir runs/vocoder_gan_tiny --split valid --json

A TTS run vocodes with it through ``--config.synth.vocoder=runs/vocoder_gan_tiny``.
"""

import ml_collections

from jaxspeech.train.config import config_beside


def get_config() -> ml_collections.ConfigDict:
    c = config_beside(__file__, "vocoder_istft_tiny.py")
    c.model.loss.stft_weight = 45.0  # chosen on valid (see above)
    c.model.loss.mel_weight = 45.0
    c.model.adversarial.discriminators = ("mpd",)
    c.optim.lr = 1e-3
    c.train.steps = 12000
    c.train.eval_every = 1000
    c.train.checkpoint_every = 1000
    return c
