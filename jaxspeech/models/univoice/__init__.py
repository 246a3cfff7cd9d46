"""UniVoice: one decoder-only LLM for autoregressive ASR and flow-matching TTS (dual attention mask, speech
infilling). config (architecture), layout (row segments and the dual mask), model (the forward pass over a
batch mixing both tasks), loss (flow matching on infill spans + LM loss, CFG dropout),
sampling (infilling TTS with guided sway Euler, cached ASR decoding), flow_omni (the Flow-Omni variant: frames
generated one by one by a per-frame flow head, with a stop head), inference (waveforms and text in)."""

from jaxspeech.models.univoice.config import UniVoiceConfig
from jaxspeech.models.univoice.layout import Packing, RowLayout, assemble, packed_rows, row_layout
from jaxspeech.models.univoice.loss import infill_spans, make_loss_fn
from jaxspeech.models.univoice.model import (
    Outputs,
    Rows,
    UniVoice,
    apply,
    batch_row_tokens,
    init,
    row_tokens,
    sequence_length,
    speech_length,
)
from jaxspeech.models.univoice.sampling import frames_for_text, infill, transcribe

__all__ = ["Outputs", "Packing", "RowLayout", "Rows", "UniVoice", "UniVoiceConfig", "apply", "assemble",
           "batch_row_tokens", "frames_for_text", "infill", "infill_spans", "init", "make_loss_fn", "packed_rows",
           "row_layout", "row_tokens", "sequence_length", "speech_length", "transcribe"]
