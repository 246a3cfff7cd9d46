"""UniVoice architecture: the LLM, the ASR audio encoder and adapter, and the flow-matching in/out layers."""

from __future__ import annotations

import dataclasses

from jaxspeech.models.llm.config import LlmConfig
from jaxspeech.models.whisper.config import WhisperConfig

AUDIO_ENCODERS = ("conformer", "whisper")
TTS_HEADS = ("infill", "flow_omni")


@dataclasses.dataclass(frozen=True)
class UniVoiceConfig:
    """Hashable (a static jit argument).

    llm: the decoder-only LLM (its vocabulary holds the text tokens and the task tokens).
    n_mels: mel bins of the TTS frames and of the ASR encoder's input features.
    audio_encoder: "conformer" (LayerNorm -> 4x conv subsampling -> Conformer blocks on ``n_mels``
      log-mels, trained with the LLM; encoder_dim / encoder_layers / encoder_heads / encoder_ff_mult /
      encoder_conv_kernel / encoder_subsampling_channels: its sizes, encoder_dropout inside its blocks)
      or "whisper" (the encoder of ``whisper``, a Whisper architecture, on its own 30 s log-mel window
      at 16 kHz, as UniVoice uses Whisper-large-v3-turbo's).
    freeze_audio_encoder: no gradient reaches the audio encoder (UniVoice freezes Whisper's).
    pool: the adapter's average-pooling stride over encoder frames (UniVoice: Whisper's 1500 -> 250).
    ctc_upsample: CTC frames per encoder frame in ``SpeechLM.encoder_token_logits`` (a Linear emits this
      many states per frame before the token head): a 4x-subsampled Conformer at the TTS front end's
      21.5 frames/s is slower than fast speech's character rate, which CTC cannot align (``ctc_asr``'s).
    time_sinusoid_dim: sinusoid width of the flow-time embedding (t scaled by 1000 inside).
    tts_head: "infill" (UniVoice: flow matching on the frames inside the LLM, bidirectional span) or
      "flow_omni" (Flow-Omni: frames generated one by one, each by a per-frame flow head on the LLM's
      causal state, with a stop head); flow_head_width / flow_head_blocks: that head's MLP.
    frame_text: each TTS frame's input also gets a learnt embedding of the text token an even speaking rate puts
      there (frame i of N: token floor((i + 1/2) L / N) of the row's L; E2/F5-TTS give frame i the i-th
      character), an alignment the LLM then only has to correct locally. Needs the infilling head.
      frame_text_blocks: ConvNeXt blocks (kernel 7, F5-TTS's text refinement) over that frame-rate text before it
      is added, so each frame also sees the characters around its guess.
    mel_mean, mel_std: the training data's log-mel statistics; the flow runs on normalised frames
      (``normalise``), the ASR encoder reads raw log-mels (its input LayerNorm normalises per frame).
    """

    llm: LlmConfig
    n_mels: int = 80
    audio_encoder: str = "conformer"
    whisper: WhisperConfig | None = None
    freeze_audio_encoder: bool = False
    encoder_dim: int = 96
    encoder_layers: int = 2
    encoder_heads: int = 4
    encoder_ff_mult: int = 4
    encoder_conv_kernel: int = 15
    encoder_subsampling_channels: int = 16
    encoder_dropout: float = 0.0
    pool: int = 2
    ctc_upsample: int = 1
    time_sinusoid_dim: int = 256
    tts_head: str = "infill"
    flow_head_width: int = 256
    flow_head_blocks: int = 3
    frame_text: bool = False
    frame_text_blocks: int = 0
    mel_mean: float = 0.0
    mel_std: float = 1.0

    def __post_init__(self):
        if self.audio_encoder not in AUDIO_ENCODERS:
            raise ValueError(f"audio_encoder must be one of {AUDIO_ENCODERS}, got {self.audio_encoder!r}")
        if (self.audio_encoder == "whisper") != (self.whisper is not None):
            raise ValueError("audio_encoder='whisper' needs a whisper architecture, and only it takes one")
        if self.tts_head not in TTS_HEADS:
            raise ValueError(f"tts_head must be one of {TTS_HEADS}, got {self.tts_head!r}")
        if self.frame_text and self.tts_head != "infill":
            raise ValueError("frame_text needs tts_head='infill': Flow-Omni generates frames one by one without "
                             "knowing how many there will be")
        if self.frame_text_blocks and not self.frame_text:
            raise ValueError("frame_text_blocks refine the frame text: set frame_text=True")
        for name in ("n_mels", "encoder_dim", "encoder_layers", "encoder_heads", "pool", "ctc_upsample",
                     "time_sinusoid_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"UniVoiceConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.frame_text_blocks, int) or self.frame_text_blocks < 0:
            raise ValueError(f"frame_text_blocks must be an int >= 0, got {self.frame_text_blocks!r}")
        if not self.mel_std > 0:
            raise ValueError(f"mel_std must be > 0, got {self.mel_std}")

    @property
    def encoder_width(self) -> int:
        """Width of the audio encoder's states (the adapter's input)."""
        return self.whisper.d_model if self.whisper is not None else self.encoder_dim

    def normalise(self, mel):
        """Log-mel -> the flow's frames: (mel - mel_mean) / mel_std."""
        return (mel - self.mel_mean) / self.mel_std

    def denormalise(self, frames):
        """The flow's frames -> log-mel."""
        return frames * self.mel_std + self.mel_mean
