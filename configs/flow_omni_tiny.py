"""Tiny Flow-Omni on the embedded eSpeak corpus: configs/univoice_tiny.py with speech frames generated one by
one (a per-frame flow-matching head on the LLM's causal state, and a stop head) instead of UniVoice's
bidirectional infilling. Same data, ASR path, commands and evaluation.

    jaxspeech train --config configs/flow_omni_tiny.py --workdir runs/flow_omni_tiny
    jaxspeech evaluate --workdir runs/flow_omni_tiny --split test-unseen --asr-workdir runs/asr_ctc_tiny --json
    jaxspeech synthesize --workdir runs/flow_omni_tiny --prompt-audio P.wav --prompt-text "..." --text "..." --out o.wav
"""

import ml_collections

from jaxspeech.train.config import config_beside


def get_config() -> ml_collections.ConfigDict:
    c = config_beside(__file__, "univoice_tiny.py")
    c.model.tts_head = "flow_omni"
    c.model.frame_text = False  # Flow-Omni does not know how many frames it will generate
    c.model.frame_text_blocks = 0
    return c
