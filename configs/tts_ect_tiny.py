"""Tiny ECT: easy consistency tuning of configs/tts_edm_tiny.py's teacher (Geng et al. 2024).

Starts from the teacher's weights; the consistency target r(t) approaches t stage by stage (q = 2,
k = 8, b = 1, a stage every ``steps_per_stage`` steps), L2 distance with EDM weighting, the same network
as its own stop-gradient target (no moving average, no frozen teacher in the loss). One or a few steps.

    jaxspeech train --config configs/tts_ect_tiny.py --workdir runs/tts_ect_tiny
    jaxspeech evaluate --workdir runs/tts_ect_tiny --split valid --steps 4 --json
"""

import ml_collections

from jaxspeech.train.config import config_beside
from jaxspeech.train.recipes.tts_teacher import student_config


def get_config() -> ml_collections.ConfigDict:
    c = student_config(config_beside(__file__, "tts_edm_tiny.py"), "ect")
    c.model.decoder.ect.teacher_workdir = "runs/tts_edm_tiny"
    c.optim.lr = 2e-4
    c.optim.warmup_steps = 100
    c.train.steps = 2000
    c.model.decoder.ect.steps_per_stage = 400  # five stages: r/t from 0 (denoising) towards 1
    return c
