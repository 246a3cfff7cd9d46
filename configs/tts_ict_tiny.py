"""Tiny iCT: a one-step consistency decoder trained from scratch (Song & Dhariwal 2023), no teacher.

The acoustic model of configs/tts_edm_tiny.py (noise centred on mu_y, sigma_data 1 for unit-variance
mels) with the iCT loss: pseudo-Huber distance, lognormal grid indices, the doubling curriculum from 10
to 1280 levels over the run, the same network as its own stop-gradient target.

    jaxspeech train --config configs/tts_ict_tiny.py --workdir runs/tts_ict_tiny
    jaxspeech evaluate --workdir runs/tts_ict_tiny --split valid --json
"""

import ml_collections

from jaxspeech.train.config import config_beside
from jaxspeech.train.recipes.tts_teacher import student_config


def get_config() -> ml_collections.ConfigDict:
    return student_config(config_beside(__file__, "tts_edm_tiny.py"), "ict")
