"""Tiny UniVoice on the embedded eSpeak corpus (2 CPU cores): one decoder-only LLM that transcribes (speech
embeddings from a small Conformer, pooled, prefix the text) and speaks (flow matching on mel frames inside the
LLM under the dual attention mask, infilling for zero-shot voice cloning). Every utterance is trained as an ASR
row and as a TTS row, in mixed batches.

    jaxspeech train --config configs/univoice_tiny.py --workdir runs/univoice_tiny
    jaxspeech evaluate --workdir runs/univoice_tiny --split test-unseen --asr-workdir runs/asr_ctc_tiny --json
    jaxspeech transcribe --workdir runs/univoice_tiny clip.wav
    jaxspeech synthesize --workdir runs/univoice_tiny --prompt-audio P.wav --prompt-text "..." --text "..." --out o.wav
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.recipe = "univoice"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.dir = "data/espeak"  # built by `jaxspeech corpus build` if absent
    c.data.train_split = "train"
    c.data.eval_split = "valid"
    c.data.preset = "tts_22k"  # the ASR encoder's features and the TTS frames
    c.data.max_frames = 4096  # mel frames per batch, padding included (ASR and TTS rows together)
    c.data.num_buckets = 3
    c.data.max_seconds = 20.0
    c.data.cache_features = True
    c.data.num_threads = 2
    c.data.row_multiple = 1  # rows of every batch are a multiple of this (the mesh's batch devices)
    # Pack the LLM rows (an ASR row is about a third of a TTS row's length) into a fixed number of packed rows
    # per bucket, with segment ids: epochs are planned so that batches fill pack_fill of their packed rows,
    # which are about pack_length_factor unpacked rows long (longer rows fragment less; on GPUs the
    # attention kernel skips the blocks between utterances, on CPUs the attention is dense). Both are throughput
    # settings, chosen on the training epoch's padding and step time (experiments/univoice_packing.py); outputs
    # and losses do not depend on them.
    c.data.pack = True
    c.data.pack_fill = 0.98
    c.data.pack_length_factor = 1.0

    c.model = ml_collections.ConfigDict()
    c.model.llm = ml_collections.ConfigDict()
    c.model.llm.vocab_size = 0  # set from the vocabulary built on the training split
    c.model.llm.hidden_size = 128
    c.model.llm.intermediate_size = 344
    c.model.llm.num_layers = 4
    c.model.llm.num_heads = 4
    c.model.llm.num_kv_heads = 2
    c.model.llm.rope_theta = 10000.0
    c.model.llm.rms_norm_eps = 1e-5
    c.model.llm.tie_embeddings = True
    c.model.llm.max_position_embeddings = 2048
    c.model.llm.head_dim = placeholder(int)  # None: hidden_size / num_heads
    c.model.llm.attention_bias = False
    c.model.llm.mlp_bias = False
    c.model.llm.bos_token_id = placeholder(int)  # a pretrained LLM's (init.llm_checkpoint) fill these
    c.model.llm.eos_token_id = placeholder(int)
    c.model.llm.pad_token_id = placeholder(int)
    c.model.llm.initializer_range = 0.02
    c.model.llm.attention_impl = "auto"
    c.model.llm.dropout = 0.0
    c.model.n_mels = 80
    c.model.audio_encoder = "conformer"  # or "whisper": the encoder of model.whisper_checkpoint
    c.model.whisper_checkpoint = ""  # a transformers Whisper directory (audio_encoder="whisper")
    c.model.whisper_config = ""  # its architecture (config.json text), written when training starts
    c.model.freeze_audio_encoder = False  # UniVoice freezes Whisper's encoder
    c.model.encoder_dim = 96
    c.model.encoder_layers = 2
    c.model.encoder_heads = 4
    c.model.encoder_ff_mult = 4
    c.model.encoder_conv_kernel = 15
    c.model.encoder_subsampling_channels = 16
    c.model.encoder_dropout = 0.05
    c.model.pool = 2  # speech embeddings at 86 / 4 / 2 = 10.8 per second (pool 1 on valid: ASR CER 94.9% vs 67.1%)
    # The encoder's CTC at 43 frames/s (as configs/asr_ctc_tiny.py): 21.5 encoder frames/s cannot align the fast
    # eSpeak voices. Needs loss.ctc_weight > 0 (only the CTC trains the upsampler). On valid after 1000 steps:
    # joint-decoding CER 27.1% -> 23.7%, the encoder's CTC alone 27.7% -> 26.4%.
    c.model.ctc_upsample = 2
    # SpecAugment on the ASR rows' audio in training (jaxspeech.data.specaugment's fields; zero masks: off). On valid
    # after 1000 steps the recognizer's masks (2 x 10 bins, 1 x 5% of frames) gave joint CER 30.5% against 23.7%.
    c.model.specaugment = ml_collections.ConfigDict(
        dict(num_freq_masks=0, max_freq_width=10, num_time_masks=0, max_time_ratio=0.05))
    c.model.time_sinusoid_dim = 256
    # Each TTS frame's input also embeds the text token an even speaking rate puts there (not UniVoice's: it gives
    # the text to the frames through attention alone, which this model does not learn to read in 4000 steps), refined
    # by two ConvNeXt blocks (F5-TTS's text refinement) so each frame sees the characters around its guess. On valid
    # after 4000 steps (experiments/diagnose_univoice_text_use.py; jaxspeech evaluate --split valid), plain / frame
    # text / + 2 blocks: the flow's error drops 0.2% / 2.2% / 8.8% with the right text instead of another's,
    # cloned-speech CER 77.2% / 75.6% / 72.1%, clone nearest its prompt's voice 61.8% / 65.8% / 64.5%.
    c.model.frame_text = True
    c.model.frame_text_blocks = 2
    c.model.tts_head = "infill"  # UniVoice; "flow_omni": frames one by one (configs/flow_omni_tiny.py)
    c.model.flow_head_width = 256  # Flow-Omni's per-frame flow head
    c.model.flow_head_blocks = 3
    c.model.mel_mean = 0.0  # measured on the training split: the flow runs on normalised log-mels
    c.model.mel_std = 1.0

    c.init = ml_collections.ConfigDict()
    # A transformers LLaMA-family checkpoint directory (e.g. SmolLM2) to start the LLM from: its architecture
    # replaces model.llm's, its tokenizer (with <asr> and <tts> added) the character vocabulary.
    c.init.llm_checkpoint = ""

    c.loss = ml_collections.ConfigDict()
    c.loss.lm_weight = 0.005  # UniVoice's weight of the LM loss beside the flow-matching MSE
    c.loss.lm_loss = "ce"  # or "emo"
    # Joint CTC-attention training: the ASR loss adds ctc_weight x a CTC loss of the transcript on the audio
    # encoder's per-frame token logits (no parameters of its own). UniVoice has none (its Whisper encoder is
    # pretrained and frozen); a Conformer trained from scratch otherwise learns only through the LLM's attention.
    # Chosen on valid after 1000 steps: 0 -> 0.3 took ASR CER from 78.2% to 67.1%, cloned speech unchanged; 0.3 -> 1.0
    # took the joint-decoding CER from 33.7% to 27.1% (the encoder's CTC alone 34.1% -> 27.7%).
    c.loss.ctc_weight = 1.0
    c.loss.infill_fraction = (0.7, 1.0)
    c.loss.audio_drop = 0.3  # CFG dropout of the audio condition alone
    c.loss.text_drop = 0.2  # ... of the audio condition and the text
    c.loss.t_min = 1e-3
    c.loss.stop_weight = 0.1  # Flow-Omni: the stop head's BCE weight
    c.loss.flow_repeats = 4  # Flow-Omni: (t, noise) draws per frame (MAR)

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-3  # UniVoice's
    c.optim.warmup_steps = 200
    c.optim.weight_decay = 1e-2
    c.optim.clip_norm = 1.0
    c.optim.b1 = 0.9
    c.optim.b2 = 0.99

    c.train = ml_collections.ConfigDict()
    # Chosen on valid (experiments/diagnose_univoice_text_use.py, jaxspeech evaluate --split valid), 4000 / 8250 /
    # 12000 steps: cloned-speech CER 72.1% / 64.0% / 61.4%, ASR CER 4.77% / 4.06% / 3.58%; the gains slow after 8000.
    c.train.steps = 12000
    c.train.accum_steps = 1
    c.train.compute_dtype = "float32"
    c.train.log_every = 25
    c.train.eval_every = 500
    c.train.eval_batches = 2
    c.train.eval_asr_utterances = 24
    c.train.checkpoint_every = 250
    c.train.keep_checkpoints = 3
    c.train.max_nonfinite_streak = 20

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.rules = (("llm/layers/.*/kernel", ("fsdp",)),)  # regex over param paths -> leading-dim spec

    c.decode = ml_collections.ConfigDict()
    # Joint CTC/attention beam search (the encoder's CTC prefix scores weigh ctc_weight against the LLM's 1 -
    # ctc_weight; needs loss.ctc_weight > 0), chosen on valid (experiments/univoice_joint_decoding.py, beams 8 / 16,
    # weights 0.3 / 0.5 / 0.7): CER 5.6% (0.5: 6.0%). beam_size 0 = greedy.
    c.decode.beam_size = 16
    c.decode.ctc_weight = 0.3
    c.decode.max_new_tokens = 160

    c.synth = ml_collections.ConfigDict()
    c.synth.steps = 32  # UniVoice: Euler, 32 steps, sway -1, CFG 2 with the norm cap
    c.synth.guidance = 2.0
    c.synth.sway = -1.0
    c.synth.frames_per_char = 0.0  # measured on the training split (the speaking rate without a prompt)
    c.synth.max_frames = 1600  # prompt + generated frames of one row (18.6 s)
    c.synth.griffin_lim_iterations = 32
    c.synth.head_steps = 16  # Flow-Omni: Euler steps of the per-frame head
    c.synth.temperature = 1.0  # Flow-Omni: scale of the head's start noise

    c.eval = ml_collections.ConfigDict()
    c.eval.asr_workdir = "runs/asr_ctc_tiny"  # the recognizer that scores synthesized speech
    c.eval.batch_size = 16
    c.eval.speaker_similarity = True  # Resemblyzer (pip install 'jaxspeech[speaker]')
    c.eval.reference_utterances = 4  # real utterances per voice for the voice centroids
    return c
