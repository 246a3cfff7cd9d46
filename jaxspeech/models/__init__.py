"""Assembled models, each exposing init / apply / loss functions: ctc_asr (Conformer CTC), whisper
(encoder-decoder with checkpoint import and cached decoding), tts (Matcha/ProsodyFM flow matching), vocoder
(Vocos-style iSTFT), hifigan (HiFi-GAN generator with PyTorch checkpoint import), llm (LLaMA-family decoder
with transformers checkpoint import and export); hashed_graph: a GraphDef hashed once, for the jitted
inference functions' static argument."""
