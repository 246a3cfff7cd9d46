"""UniVoice from waveforms and text: transcription, and speech in a prompt's voice (zero-shot cloning).

``UniVoiceSpeech`` holds a model, its character vocabulary and the mel preset, and works on
waveforms at the preset's rate (``jaxspeech.audio.load_audio`` resamples files). Utterances are
padded to a multiple of 64 frames, so jit compiles a few shapes only.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxspeech import audio
from jaxspeech.data.bucketing import round_up
from jaxspeech.data.univoice import ASR, EOS, TTS, WhisperFeatures, spoken_text, symbol_id
from jaxspeech.models.hashed_graph import hashed
from jaxspeech.models.univoice import flow_omni
from jaxspeech.models.univoice.config import UniVoiceConfig
from jaxspeech.models.univoice.sampling import frames_for_text, infill, transcribe, transcribe_ctc
from jaxspeech.text import Tokenizer, normalize_for_asr

FRAME_MULTIPLE = 64
MIN_PROMPT_SECONDS = 0.5


def _padded(length: int) -> int:
    return int(round_up(length, FRAME_MULTIPLE))


class UniVoiceSpeech:
    """Transcribe and synthesize with a UniVoice model.

    preset: the mel preset the model was trained on; max_new_tokens: transcript length cap;
    steps, guidance, sway: the infilling sampler's settings; head_steps, temperature: Flow-Omni's
    per-frame sampler (it stops by its stop head, at most twice the estimated frames);
    frames_per_char: the speaking rate used when there is no prompt (measured on the training data);
    max_frames: the longest row (prompt and generated frames together) the model may be given.
    """

    def __init__(self, config: UniVoiceConfig, tokenizer: Tokenizer, graphdef: nnx.GraphDef, params: nnx.State, *,
                 preset: str, max_new_tokens: int, steps: int, guidance: float, sway: float, frames_per_char: float,
                 max_frames: int, head_steps: int = 16, temperature: float = 1.0):  # fmt: skip
        self.config, self.tokenizer, self.graphdef, self.params = config, tokenizer, graphdef, params
        self._static_graphdef = hashed(graphdef)  # the jitted samplers' static argument, hashed once
        self.preset = audio.get_preset(preset)
        self.max_new_tokens, self.steps, self.guidance, self.sway = max_new_tokens, steps, guidance, sway
        self.frames_per_char, self.max_frames = frames_per_char, max_frames
        self.head_steps, self.temperature = head_steps, temperature
        self._ids = {symbol: symbol_id(tokenizer, symbol) for symbol in (ASR, TTS, EOS)}
        self._log_mel = jax.jit(lambda w: audio.log_mel(w, self.preset))
        if config.whisper is not None:
            self._whisper_features = WhisperFeatures(f"whisper_{config.whisper.n_mels}")

    def mel(self, waveform: np.ndarray) -> np.ndarray:
        """Log-mel [T, n_mels] of a mono waveform at the preset's rate."""
        waveform = np.asarray(waveform, np.float32)
        if waveform.ndim != 1 or waveform.size == 0:
            raise ValueError(f"need a non-empty mono waveform, got shape {waveform.shape}")
        chunk = FRAME_MULTIPLE * self.preset.hop_length
        padded = np.pad(waveform, (0, -len(waveform) % chunk))
        return np.asarray(self._log_mel(padded))[: audio.num_frames(len(waveform), self.preset)]

    def asr_features(self, waveforms: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The audio encoder's input [B, frames, mels] and lengths [B] for waveforms at the preset's rate:
        the log-mels (padded to a multiple of 64 frames), or Whisper's 30 s window at 16 kHz."""
        if self.config.whisper is not None:
            whisper = self._whisper_features
            if any(len(w) > whisper.preset.pad_or_trim_samples * self.preset.sample_rate / whisper.preset.sample_rate
                   for w in waveforms):
                raise ValueError("Whisper's encoder reads 30 s: split longer audio")
            features = np.stack([whisper.features(audio.resample(np.asarray(w, np.float32), self.preset.sample_rate,
                                                                 whisper.preset.sample_rate)) for w in waveforms])
            return features, np.full((len(waveforms),), whisper.window, np.int32)
        mels = [self.mel(w) for w in waveforms]
        features = np.zeros((len(mels), _padded(max(len(m) for m in mels)), self.config.n_mels), np.float32)
        for row, mel in enumerate(mels):
            features[row, : len(mel)] = mel
        return features, np.array([len(m) for m in mels], np.int32)

    def transcribe(self, waveforms: Sequence[np.ndarray], *, beam_size: int | None = None,
                   ctc_weight: float = 0.0) -> list[str]:
        """One transcript per waveform (greedy, or beam search of ``beam_size``), decoded as one batch.
        ``ctc_weight`` > 0: joint CTC/attention beam search with the encoder's CTC (a beam of 1 when
        ``beam_size`` is None), for a model trained with ``loss.ctc_weight`` > 0."""
        features, lengths = self.asr_features(waveforms)
        if ctc_weight and beam_size is None:
            beam_size = 1
        decoded = transcribe(self._static_graphdef, self.params, jnp.asarray(features), lengths, [self._ids[ASR]],
                             max_new_tokens=self.max_new_tokens, eos_id=self._ids[EOS], beam_size=beam_size,
                             ctc_weight=ctc_weight)  # fmt: skip
        return self._texts(decoded.tokens, decoded.lengths)

    def transcribe_ctc(self, waveforms: Sequence[np.ndarray]) -> list[str]:
        """One transcript per waveform from the audio encoder's CTC alone (best path, no LLM): meaningful for
        a model trained with ``loss.ctc_weight`` > 0, it shows what the encoder hears."""
        features, lengths = self.asr_features(waveforms)
        return self._texts(*transcribe_ctc(self._static_graphdef, self.params, jnp.asarray(features), lengths,
                                           blank_id=self._ids[EOS]))  # fmt: skip

    def _texts(self, ids: jax.Array, counts: jax.Array) -> list[str]:
        """Token ids [B, N] with counts [B] -> one text per row (its first count ids)."""
        ids, counts = jax.device_get((ids, counts))
        return [self.tokenizer.decode(row[:n]) for row, n in zip(ids, counts, strict=True)]

    def _text(self, text: str, what: str) -> str:
        spoken = spoken_text(text)
        if not normalize_for_asr(spoken):
            raise ValueError(f"{what} has no words to speak: {text!r}")
        self.tokenizer.encode(spoken)  # unknown symbols raise, naming them
        return spoken

    def synthesize(self, texts: Sequence[str], *, key: jax.Array, prompt_audio: np.ndarray | None = None,
                   prompt_text: str | None = None) -> list[np.ndarray]:
        """Log-mels [T_i, n_mels] of ``texts``, in the voice of ``prompt_audio`` (a waveform at the
        preset's rate, with its transcript ``prompt_text``) or, without a prompt, in whatever voice the
        model draws. Durations follow the prompt's speaking rate (characters per frame), else the
        training data's. Raises ValueError for empty texts, a prompt shorter than 0.5 s, a prompt
        without its text, and rows longer than ``max_frames``."""
        if (prompt_audio is None) != (prompt_text is None):
            raise ValueError("a prompt needs both its audio and its text (or neither)")
        targets = [self._text(text, "the text") for text in texts]
        if not targets:
            return []
        prompt = np.zeros((0, self.config.n_mels), np.float32)
        prefix = ""
        rate = (self.frames_per_char, 1)  # (frames, characters): the training data's speaking rate
        if prompt_audio is not None:
            prompt = self.mel(prompt_audio)
            if len(prompt) < MIN_PROMPT_SECONDS * self.preset.sample_rate / self.preset.hop_length:
                raise ValueError(f"the prompt audio is {len(prompt)} frames; give at least {MIN_PROMPT_SECONDS} s")
            prefix = self._text(prompt_text, "the prompt text") + " "
            rate = (len(prompt), len(prefix))
        new_frames = frames_for_text(*rate, [len(t) for t in targets])
        lengths = (len(prompt) + new_frames).astype(np.int32)
        if lengths.max() > self.max_frames:
            raise ValueError(f"prompt + speech would be {lengths.max()} frames, more than this model's "
                             f"{self.max_frames}: shorten the prompt or the text")  # fmt: skip
        encoded = [np.concatenate([[self._ids[TTS]], self.tokenizer.encode(prefix + t)]) for t in targets]
        text = np.zeros((len(targets), max(len(e) for e in encoded)), np.int32)
        for row, ids in enumerate(encoded):
            text[row, : len(ids)] = ids
        if self.config.tts_head == "flow_omni":
            return self._continue(prompt, text, [len(e) for e in encoded], new_frames, key)
        capacity = _padded(int(lengths.max()))
        prompts = np.zeros((len(targets), capacity, self.config.n_mels), np.float32)
        prompts[:, : len(prompt)] = prompt
        mel = infill(self._static_graphdef, self.params, key, jnp.asarray(text), jnp.asarray([len(e) for e in encoded]),
                     jnp.asarray(prompts), jnp.full((len(targets),), len(prompt)), jnp.asarray(lengths),
                     steps=self.steps, guidance_scale=float(self.guidance), sway=float(self.sway))  # fmt: skip
        mel = np.asarray(mel)
        return [mel[row, len(prompt): lengths[row]] for row in range(len(targets))]

    def _continue(self, prompt: np.ndarray, text: np.ndarray, text_lengths: list[int], estimated: np.ndarray,
                  key: jax.Array) -> list[np.ndarray]:
        """Flow-Omni: frames after the prompt until the stop head fires (at most twice the estimate)."""
        rows = len(text_lengths)
        limit = min(_padded(2 * int(estimated.max())), self.max_frames - len(prompt))
        prompts = np.zeros((rows, _padded(max(len(prompt), 1)), self.config.n_mels), np.float32)
        prompts[:, : len(prompt)] = prompt
        mel, lengths = flow_omni.generate(self._static_graphdef, self.params, key, jnp.asarray(text),
                                          jnp.asarray(text_lengths), jnp.asarray(prompts),
                                          jnp.full((rows,), len(prompt)), max_frames=limit,
                                          head_steps=self.head_steps, temperature=float(self.temperature))
        mel, lengths = jax.device_get((mel, lengths))
        return [mel[row, : lengths[row]] for row in range(rows)]
