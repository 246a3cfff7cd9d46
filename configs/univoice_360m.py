"""UniVoice at the paper's scale, for GPUs: SmolLM2-360M as the LLM and Whisper-large-v3-turbo's encoder
(frozen, its 30 s window average-pooled to 250 embeddings) for ASR, bf16 compute, FSDP over the LLM's
layers. Both start from local transformers checkpoint directories (no hub access here: download them
elsewhere, e.g. ``huggingface-cli download HuggingFaceTB/SmolLM2-360M --local-dir checkpoints/SmolLM2-360M``
and ``openai/whisper-large-v3-turbo``); the LLM's architecture and tokenizer come from its checkpoint, with
``<asr>`` and ``<tts>`` added. Point ``data.dir`` at a corpus in the manifest layout (LibriTTS, LJSpeech
and JSONL manifests load through ``jaxspeech.data.readers``).

    jaxspeech train --config configs/univoice_360m.py --workdir runs/univoice_360m \\
        --config.data.dir=data/libritts --config.mesh.fsdp=8 --config.data.row_multiple=8
"""

import ml_collections

from jaxspeech.train.config import config_beside


def get_config() -> ml_collections.ConfigDict:
    c = config_beside(__file__, "univoice_tiny.py")
    c.init.llm_checkpoint = "checkpoints/SmolLM2-360M"
    c.model.audio_encoder = "whisper"
    c.model.whisper_checkpoint = "checkpoints/whisper-large-v3-turbo"
    c.model.freeze_audio_encoder = True
    c.loss.ctc_weight = 0.0  # the frozen, pretrained encoder needs no CTC
    c.decode.ctc_weight = 0.0  # ... so there is none to decode with
    c.model.ctc_upsample = 1
    c.decode.beam_size = 0  # greedy: joint decoding needs the CTC, and the LLM alone gained little from a beam
    c.model.pool = 6  # Whisper's 1500 positions -> 250 speech embeddings (UniVoice)
    c.model.frame_text = False  # UniVoice's TTS rows: the frames read the text through attention alone
    c.model.frame_text_blocks = 0
    c.model.llm.max_position_embeddings = 8192
    c.model.llm.attention_impl = "auto"  # cuDNN for the causal rows, the Pallas kernel for the dual mask
    c.model.llm.dropout = 0.0
    c.data.max_frames = 20000  # mel frames per batch and device group (UniVoice: 20k frames per GPU)
    c.data.num_buckets = 8
    c.data.max_seconds = 30.0  # Whisper's window
    c.data.cache_features = False  # a real corpus does not fit in memory
    c.data.num_threads = 8
    c.train.steps = 200000
    c.train.compute_dtype = "bfloat16"
    c.train.log_every = 100
    c.train.eval_every = 5000
    c.train.checkpoint_every = 2000
    c.optim.warmup_steps = 2000
    c.synth.max_frames = 2584  # 30 s at 86 frames/s: prompt and generated frames of one row
    c.decode.max_new_tokens = 448
    c.mesh.rules = (("llm/layers/.*/kernel", ("fsdp",)), ("llm/embed_tokens/embedding", ("fsdp",)))
    return c
