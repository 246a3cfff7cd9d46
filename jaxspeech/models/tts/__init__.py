"""Text-to-speech acoustic model: Matcha-TTS (Mehta et al. 2024) with ProsodyFM's phrase breaks and
terminal intonation encoder (He et al. 2025), as composable parts plus a generative objective.

Parts (one job per module): ``encoder`` (phoneme + speaker embedding -> conv prenet -> RoPE
transformer -> text means mu, duration predictor on the detached output, MAS), ``prosody``
(terminal intonation encoder and predictor, frame-level pitch predictor), ``decoder`` (the network
``net(x, time, cond)``: 1D U-Net or DiT), ``model`` (the assembled NNX module and its pure form),
``loss`` (duration + prior + the objective's loss + prosody terms), ``synthesis`` (durations ->
length regulation -> the objective's sampler), ``synthesizer`` (text -> waveform, usable from a
notebook) and ``evaluation`` (a split synthesized and scored). The decoder's objective
(``config.decoder.objective``, ``jaxspeech.objectives``) owns the parameterisation, loss and
sampler: flow matching today, new ones with no edit here.

Phrase breaks (ProsodyFM): the phoneme sequence carries a break token (``config.break_token``,
``jaxspeech.text.phrasing.BREAK``) at every word boundary. It is an ordinary token: MAS gives it
as many frames as the pause in the audio (>= 1), and the duration predictor learns break lengths
from those alignments with no prosodic labels. ``metrics["break_frames"]`` tracks them.

Batch contract (dict of arrays; right padding, masks are authoritative, padding may hold anything):
  tokens              [B,L] int     phoneme ids, with break tokens between words
  token_mask          [B,L] bool
  speaker             [B] int       in [0, num_speakers)
  mel                 [B,T,n_mels]  log-mel (natural log), un-normalised; the model normalises
                                    with config.mel_mean / mel_std (corpus statistics)
  mel_mask            [B,T] bool    1 <= valid tokens <= valid frames per utterance
  boundary_word_start [B,N] int     token index of the first phoneme of the word before boundary n
  boundary_word_end   [B,N] int     one past its last phoneme (exclusive; the token there is the
                                    boundary's punctuation, which the predictor also reads)
  boundary_mask       [B,N] bool    which boundaries exist (N may be 0; the four boundary keys
                                    may also be absent together: no intonation style)
  boundary_contour    [B,N,C] float log-F0 of that word relative to the speaker's register
                                    (``jaxspeech.data.tts``), resampled to C = intonation.contour_points
  boundary_kind       optional, ignored: the punctuation token carries the kind
  log_f0              [B,T] float   with pitch.enabled: the pitch processor's log-F0 per mel frame
  voiced              [B,T] bool    with pitch.enabled: the frame is voiced

Pure form: ``graphdef, params = init(config, key)``; ``encode(graphdef, params, ...)``;
``decoder_network(graphdef, params)`` -> ``net(x, time, cond)``; ``make_loss_fn(graphdef, config)``;
``generate(graphdef, params, config, ...)``.
"""

from jaxspeech.models.tts.config import default_config, upgrade_saved, with_objective
from jaxspeech.models.tts.decoder import NETWORKS, DecoderNetwork, null_condition
from jaxspeech.models.tts.encoder import DurationPredictor, TextEncoder, align
from jaxspeech.models.tts.synthesis import FRAME_BUCKET, Synthesis, generate, sampler_options
from jaxspeech.models.tts.loss import make_loss_fn, random_segment
from jaxspeech.models.tts.model import AcousticModel, decoder_network, encode, init, objective_of
from jaxspeech.models.tts.prosody import (
    BOUNDARY_KEYS,
    IntonationPredictor,
    PitchPredictor,
    TerminalIntonationEncoder,
    pitch_channels,
    pitch_condition,
    pitch_inputs,
)

__all__ = [
    "BOUNDARY_KEYS", "FRAME_BUCKET", "NETWORKS", "AcousticModel", "DecoderNetwork", "DurationPredictor",
    "IntonationPredictor", "PitchPredictor", "Synthesis", "TerminalIntonationEncoder", "TextEncoder", "align",
    "decoder_network", "default_config", "encode", "generate", "init", "make_loss_fn", "null_condition",
    "objective_of", "pitch_channels", "pitch_condition", "pitch_inputs", "random_segment", "sampler_options",
    "upgrade_saved", "with_objective",
]
