"""Tiny EDM teacher for the consistency students (CoMoSpeech's teacher): the acoustic model of
configs/tts_fm_tiny.py with its decoder trained by the EDM denoising loss instead of flow matching, the
noise centred on the text prior mean mu_y (CoMoSpeech), and no classifier-free guidance (CoMoSpeech has
none). Sampled by the Euler probability-flow solver down a 50-level Karras grid (CoMoSpeech's teacher).

    jaxspeech train --config configs/tts_edm_tiny.py --workdir runs/tts_edm_tiny
    jaxspeech evaluate --workdir runs/tts_edm_tiny --split valid --steps 10 --json
    jaxspeech train --config configs/tts_comospeech_tiny.py --workdir runs/tts_cd_tiny   # the student
"""

import ml_collections

from jaxspeech.models import tts
from jaxspeech.train.config import config_beside


def get_config() -> ml_collections.ConfigDict:
    c = config_beside(__file__, "tts_fm_tiny.py")
    c.model = tts.with_objective(c.model, "edm")
    c.model.decoder.noise_around_mu = True
    # EDM's sigma_data is the data's standard deviation: the model normalises mels to unit variance with the
    # corpus statistics (EDM's 0.5 is for images in [-1, 1]).
    c.model.decoder.edm.sigma_data = 1.0
    c.model.decoder.cond_drop_prob = 0.0
    # The teacher behind the consistency figures (docs/benchmarks.md) reads no pitch; the flow-matching config's
    # harmonic-comb pitch input came later and is untried here.
    c.model.pitch.condition_decoder = False
    c.data.preset = "tts_22k"  # likewise its 80 filters (the flow-matching config's 128 came later)
    c.synth.sampler = ml_collections.ConfigDict(dict(steps=50, method="euler", temperature=1.0))
    return c
