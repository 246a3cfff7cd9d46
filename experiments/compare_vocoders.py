"""Griffin-Lim (32 iterations) vs a trained iSTFT vocoder: MCD against the eSpeak reference on test-seen.

    python experiments/compare_vocoders.py CORPUS_DIR VOCODER_WORKDIR [N_UTTERANCES]

Both vocode the reference log-mel of the same utterances; prints one JSON line.
"""
import json
import os
import sys

import jax
import numpy as np

from jaxspeech.audio import load_audio, log_mel, log_mel_to_audio
from jaxspeech.eval import mel_cepstral_distortion
from jaxspeech.data.readers import load_records
from jaxspeech.train.recipes.vocoder import vocode

data, workdir = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 76
records = load_records(data, split="test-seen")[:n]
voc = vocode(workdir)
gl = jax.jit(lambda m: log_mel_to_audio(m, "tts_22k", n_iter=32))
res = {"griffin_lim_32": [], "istft_vocoder": []}
for r in records:
    audio = load_audio(os.path.join(data, r["audio"]), sample_rate=22050)
    mel = np.asarray(log_mel(audio, "tts_22k"))
    res["griffin_lim_32"].append(mel_cepstral_distortion(np.asarray(gl(mel)), audio))
    res["istft_vocoder"].append(mel_cepstral_distortion(np.asarray(voc(mel)), audio))
print(json.dumps({k: round(float(np.mean(v)), 3) for k, v in res.items()} | {"utterances": len(records)}))
