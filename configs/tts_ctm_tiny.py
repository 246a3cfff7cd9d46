"""Tiny CTM: a consistency trajectory model distilled from configs/tts_edm_tiny.py's teacher (Kim et
al. 2024; SoundCTM's settings: 40 levels, auxiliary denoising loss weight 1 balanced against the CTM
term's gradient norm as in the authors' code).

The decoder network reads two levels (t, s) and jumps from any level to any lower one; its second
time input starts switched off, so step 0 is the teacher. Gamma-sampling: gamma = 0 jumps
deterministically along the trajectory, gamma = 1 is consistency multistep sampling.

    jaxspeech train --config configs/tts_ctm_tiny.py --workdir runs/tts_ctm_tiny
    jaxspeech evaluate --workdir runs/tts_ctm_tiny --split valid --steps 4 --json
"""

import ml_collections

from jaxspeech.train.config import config_beside
from jaxspeech.train.recipes.tts_teacher import student_config


def get_config() -> ml_collections.ConfigDict:
    c = student_config(config_beside(__file__, "tts_edm_tiny.py"), "ctm")
    c.model.decoder.ctm.teacher_workdir = "runs/tts_edm_tiny"
    # At most 8 teacher Heun steps per target (16 teacher calls a step) instead of the whole 39-level grid:
    # the CPU's cost, not a choice measured on valid.
    c.model.decoder.ctm.teacher_steps = 8
    # The target's moving average: the paper's 0.999 is for runs of 100k+ steps; over a run of a few thousand
    # it hardly leaves the teacher's initialisation (2-D ring, 2000 steps: one-step SW_2 0.27 at 0.999 vs 0.10
    # at 0.95). 0.95 as the CoMoSpeech student's.
    c.model.decoder.ctm.ema_decay = 0.95
    c.optim.lr = 2e-4
    c.optim.warmup_steps = 100
    c.train.steps = 2000
    return c
