"""Tiny CoMoSpeech: a one-step consistency-distilled student of configs/tts_edm_tiny.py.

The student starts from the teacher's weights (encoder and decoder) and learns, under the consistency
parameterisation, to map each point of the teacher's ODE trajectories to their end: the student at
sigma_{n+1} against a moving-average target (rate 0.95) at sigma_n after one Euler step of the frozen
teacher, on a 50-level Karras grid, masked L2 (CoMoSpeech's settings). The encoder keeps its duration
and prior losses. Synthesis takes one step from sigma_max by default (``--steps 2`` for two).

    jaxspeech train --config configs/tts_edm_tiny.py --workdir runs/tts_edm_tiny
    jaxspeech train --config configs/tts_comospeech_tiny.py --workdir runs/tts_cd_tiny
    jaxspeech synthesize --workdir runs/tts_cd_tiny --text "Was the clock too shiny?" --out out.wav
"""

import ml_collections

from jaxspeech.train.config import config_beside
from jaxspeech.train.recipes.tts_teacher import student_config


def get_config() -> ml_collections.ConfigDict:
    c = student_config(config_beside(__file__, "tts_edm_tiny.py"), "cd")
    c.model.decoder.cd.teacher_workdir = "runs/tts_edm_tiny"
    # Fine-tuning from the teacher: a tenth of its peak learning rate, a short warmup, a short run.
    c.optim.lr = 2e-4
    c.optim.warmup_steps = 100
    c.train.steps = 2000
    return c
