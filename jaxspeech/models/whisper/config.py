"""Whisper sizes, conversion from/to a ``transformers`` WhisperConfig dict, and the special tokens.

``whisper_config("tiny")`` .. ``whisper_config("large-v3")`` give the published architectures
(Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak Supervision");
``WhisperConfig.from_transformers(json.load(open("config.json")))`` reads a checkpoint's config.
Special-token ids follow from the vocabulary layout (``special_tokens``), as in openai-whisper.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

# Whisper's language tokens, in vocabulary order (openai-whisper ``LANGUAGES``); large-v3 adds "yue".
LANGUAGE_CODES = (
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it", "id",
    "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur", "hr", "bg",
    "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br",
    "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km", "sn", "yo", "so",
    "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt",
    "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue",
)  # fmt: skip

@dataclasses.dataclass(frozen=True)
class WhisperConfig:
    """Architecture of a Whisper encoder-decoder (hashable, so it can be a static jit argument).

    n_mels: mel bins of the input features (80, or 128 for large-v3).
    vocab_size: token vocabulary; the output projection is tied to the token embedding.
    d_model: width of encoder and decoder; ``*_heads`` must divide it.
    encoder_layers, encoder_heads, encoder_ffn_dim / decoder_*: depth, heads and MLP width.
    max_source_positions: encoder positions (1500 = 30 s: 3000 frames halved by the stride-2 conv).
    max_target_positions: decoder positions, which bounds prefix + generated tokens.
    eos_token_id, decoder_start_token_id, pad_token_id, bos_token_id: as in transformers.
    suppress_tokens: never generated; begin_suppress_tokens: not generated as the first token.
    dropout: residual/embedding dropout rate (transformers' ``dropout``), used only with a key.
    attention_impl: ``jaxspeech.nn.attention.attention`` implementation.
    """

    n_mels: int
    vocab_size: int
    d_model: int
    encoder_layers: int
    encoder_heads: int
    encoder_ffn_dim: int
    decoder_layers: int
    decoder_heads: int
    decoder_ffn_dim: int
    eos_token_id: int
    decoder_start_token_id: int
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    max_source_positions: int = 1500
    max_target_positions: int = 448
    suppress_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()
    dropout: float = 0.0
    attention_impl: str = "auto"

    def __post_init__(self):
        sizes = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("n_mels", "vocab_size", "d_model", "encoder_layers", "encoder_heads", "encoder_ffn_dim",
                     "decoder_layers", "decoder_heads", "decoder_ffn_dim", "max_source_positions",
                     "max_target_positions"):  # fmt: skip
            if not isinstance(sizes[name], int) or sizes[name] < 1:
                raise ValueError(f"WhisperConfig.{name} must be a positive int, got {sizes[name]!r}")
        for name in ("encoder_heads", "decoder_heads"):
            if self.d_model % sizes[name]:
                raise ValueError(f"d_model={self.d_model} is not divisible by {name}={sizes[name]}")
        for name in ("eos_token_id", "decoder_start_token_id", "pad_token_id", "bos_token_id"):
            token = sizes[name]
            if token is not None and not 0 <= token < self.vocab_size:
                raise ValueError(f"WhisperConfig.{name}={token} is outside the vocabulary [0, {self.vocab_size})")
        for name in ("suppress_tokens", "begin_suppress_tokens"):
            tokens = tuple(sizes[name])
            object.__setattr__(self, name, tokens)
            bad = [t for t in tokens if not 0 <= t < self.vocab_size]
            if bad:
                raise ValueError(f"WhisperConfig.{name} has ids outside the vocabulary: {bad}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def max_frames(self) -> int:
        """Input frames of a full window (the stride-2 convolution halves them)."""
        return 2 * self.max_source_positions

    @classmethod
    def from_transformers(cls, config: Mapping[str, Any]) -> WhisperConfig:
        """Reads a transformers ``WhisperConfig`` dict (a checkpoint's config.json).

        Raises ValueError for configs this implementation cannot reproduce (another model type,
        activation, embedding scaling, untied output projection) or with missing fields.
        Training-only fields other than ``dropout`` (layerdrop, attention/activation dropout,
        SpecAugment) do not change inference and are not carried.
        """
        if config.get("model_type", "whisper") != "whisper":
            raise ValueError(f"not a Whisper config: model_type={config.get('model_type')!r}")
        unsupported = []
        if config.get("activation_function", "gelu") != "gelu":
            unsupported.append(f"activation_function={config['activation_function']!r} (only 'gelu')")
        if config.get("scale_embedding", False):
            unsupported.append("scale_embedding=True (Whisper never scales embeddings)")
        if not config.get("tie_word_embeddings", True):
            unsupported.append("tie_word_embeddings=False (the output projection must be the token embedding)")
        if unsupported:
            raise ValueError("unsupported Whisper config: " + "; ".join(unsupported))
        required = {
            "n_mels": "num_mel_bins",
            "vocab_size": "vocab_size",
            "d_model": "d_model",
            "encoder_layers": "encoder_layers",
            "encoder_heads": "encoder_attention_heads",
            "encoder_ffn_dim": "encoder_ffn_dim",
            "decoder_layers": "decoder_layers",
            "decoder_heads": "decoder_attention_heads",
            "decoder_ffn_dim": "decoder_ffn_dim",
            "max_source_positions": "max_source_positions",
            "max_target_positions": "max_target_positions",
            "eos_token_id": "eos_token_id",
            "decoder_start_token_id": "decoder_start_token_id",
        }
        missing = [key for key in required.values() if config.get(key) is None]
        if missing:
            raise ValueError(f"Whisper config is missing fields: {missing}")
        fields = {name: config[key] for name, key in required.items()}
        eos = fields["eos_token_id"]
        if isinstance(eos, (list, tuple)):
            if len(eos) != 1:
                raise ValueError(f"unsupported Whisper config: several eos_token_id {eos}")
            fields["eos_token_id"] = eos[0]
        return cls(
            **fields,
            pad_token_id=config.get("pad_token_id"),
            bos_token_id=config.get("bos_token_id"),
            suppress_tokens=tuple(config.get("suppress_tokens") or ()),
            begin_suppress_tokens=tuple(config.get("begin_suppress_tokens") or ()),
            dropout=float(config.get("dropout", 0.0)),
        )

    def to_transformers(self, dtype: str = "float32") -> dict[str, Any]:
        """The transformers ``WhisperConfig`` dict (config.json) of this architecture."""
        return {
            "architectures": ["WhisperForConditionalGeneration"],
            "model_type": "whisper",
            "is_encoder_decoder": True,
            "dtype": dtype,
            "activation_function": "gelu",
            "scale_embedding": False,
            "tie_word_embeddings": True,
            "num_mel_bins": self.n_mels,
            "vocab_size": self.vocab_size,
            "d_model": self.d_model,
            "encoder_layers": self.encoder_layers,
            "encoder_attention_heads": self.encoder_heads,
            "encoder_ffn_dim": self.encoder_ffn_dim,
            "decoder_layers": self.decoder_layers,
            "decoder_attention_heads": self.decoder_heads,
            "decoder_ffn_dim": self.decoder_ffn_dim,
            "max_source_positions": self.max_source_positions,
            "max_target_positions": self.max_target_positions,
            "eos_token_id": self.eos_token_id,
            "decoder_start_token_id": self.decoder_start_token_id,
            "pad_token_id": self.pad_token_id,
            "bos_token_id": self.bos_token_id,
            "suppress_tokens": list(self.suppress_tokens) or None,
            "begin_suppress_tokens": list(self.begin_suppress_tokens) or None,
            "dropout": self.dropout,
        }


# d_model, encoder layers, decoder layers, heads
_SIZES = {
    "tiny": (384, 4, 4, 6),
    "base": (512, 6, 6, 8),
    "small": (768, 12, 12, 12),
    "medium": (1024, 24, 24, 16),
    "large": (1280, 32, 32, 20),
    "large-v2": (1280, 32, 32, 20),
    "large-v3": (1280, 32, 32, 20),
    "large-v3-turbo": (1280, 32, 4, 20),
}
WHISPER_SIZES = tuple(_SIZES) + tuple(f"{name}.en" for name in ("tiny", "base", "small", "medium"))


def whisper_config(size: str, **overrides: Any) -> WhisperConfig:
    """The published architecture ``size`` (one of ``WHISPER_SIZES``), with field overrides.

    Token ids follow the vocabulary: English-only (".en", 51864 tokens, eot 50256), multilingual
    (51865, eot 50257) or large-v3 (128 mels, 51866 tokens with "yue"). Suppression lists are
    empty except ``begin_suppress_tokens`` = (" ", eot); checkpoints carry their own lists.
    """
    base = size.removesuffix(".en")
    if size not in WHISPER_SIZES:
        raise ValueError(f"unknown Whisper size {size!r}; known: {', '.join(WHISPER_SIZES)}")
    d_model, encoder_layers, decoder_layers, heads = _SIZES[base]
    v3 = base.startswith("large-v3")
    eot = 50256 if size.endswith(".en") else 50257
    vocab_size = 51866 if v3 else (51864 if size.endswith(".en") else 51865)
    fields = dict(
        n_mels=128 if v3 else 80,
        vocab_size=vocab_size,
        d_model=d_model,
        encoder_layers=encoder_layers,
        encoder_heads=heads,
        encoder_ffn_dim=4 * d_model,
        decoder_layers=decoder_layers,
        decoder_heads=heads,
        decoder_ffn_dim=4 * d_model,
        eos_token_id=eot,
        decoder_start_token_id=eot + 1,
        pad_token_id=eot,
        bos_token_id=eot,
        begin_suppress_tokens=(220, eot),
    )
    unknown = set(overrides) - {f.name for f in dataclasses.fields(WhisperConfig)}
    if unknown:
        raise ValueError(f"unknown WhisperConfig fields: {sorted(unknown)}")
    return WhisperConfig(**{**fields, **overrides})


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
    """Ids of Whisper's special tokens. Text tokens are exactly the ids below ``eot``.

    Layout after the text tokens: eot, sot, one token per language, translate, transcribe,
    start-of-LM, start-of-previous, no-speech, no-timestamps, then the timestamp tokens
    (0.00 s, 0.02 s, ...) from ``timestamp_begin`` to the end of the vocabulary.
    """

    eot: int
    sot: int
    languages: tuple[str, ...]
    translate: int
    transcribe: int
    start_of_lm: int
    start_of_prev: int
    no_speech: int
    no_timestamps: int
    timestamp_begin: int
    multilingual: bool

    @classmethod
    def from_layout(cls, eot: int, num_languages: int, *, multilingual: bool = True) -> SpecialTokens:
        """Ids for a vocabulary whose special tokens start at ``eot`` with ``num_languages`` languages."""
        if not 0 <= num_languages <= len(LANGUAGE_CODES):
            raise ValueError(f"num_languages must be in [0, {len(LANGUAGE_CODES)}], got {num_languages}")
        translate = eot + 2 + num_languages
        return cls(
            eot=eot,
            sot=eot + 1,
            languages=LANGUAGE_CODES[:num_languages],
            translate=translate,
            transcribe=translate + 1,
            start_of_lm=translate + 2,
            start_of_prev=translate + 3,
            no_speech=translate + 4,
            no_timestamps=translate + 5,
            timestamp_begin=translate + 6,
            multilingual=multilingual,
        )

    def language(self, code: str) -> int:
        """Token id of language ``code`` (e.g. "en")."""
        if code not in self.languages:
            raise ValueError(f"unknown language {code!r}; this vocabulary has {', '.join(self.languages)}")
        return self.sot + 1 + self.languages.index(code)


def special_tokens(config: WhisperConfig, *, num_timestamps: int = 1501, multilingual: bool | None = None):
    """Special tokens of ``config``'s vocabulary: eot = ``eos_token_id``, timestamps fill the end.

    ``multilingual`` None follows openai-whisper (vocab_size >= 51865). Raises if the layout
    disagrees with ``decoder_start_token_id`` (sot must follow eot).
    """
    num_languages = config.vocab_size - num_timestamps - config.eos_token_id - 8
    if not 0 <= num_languages <= len(LANGUAGE_CODES):
        raise ValueError(
            f"vocab_size={config.vocab_size} with eot={config.eos_token_id} and {num_timestamps} timestamp "
            f"tokens leaves {num_languages} language tokens; not a Whisper vocabulary layout"
        )
    if config.decoder_start_token_id != config.eos_token_id + 1:
        raise ValueError(
            f"decoder_start_token_id={config.decoder_start_token_id} does not follow eot={config.eos_token_id}"
        )
    if multilingual is None:
        multilingual = config.vocab_size >= 51865
    return SpecialTokens.from_layout(config.eos_token_id, num_languages, multilingual=multilingual)


def decoder_prefix(
    tokens: SpecialTokens, *, language: str | None = None, task: str = "transcribe", timestamps: bool = False
) -> tuple[int, ...]:
    """The forced decoder prefix: sot [language task] [no-timestamps].

    English-only vocabularies take no language or task tokens (as openai-whisper); a
    multilingual one needs ``language`` (``decoding.detect_language`` predicts it).
    """
    if task not in ("transcribe", "translate"):
        raise ValueError(f"task must be 'transcribe' or 'translate', got {task!r}")
    prefix = [tokens.sot]
    if tokens.multilingual:
        if language is None:
            raise ValueError("a multilingual model needs a language token (decoding.detect_language predicts one)")
        prefix += [tokens.language(language), getattr(tokens, task)]
    elif language not in (None, "en") or task != "transcribe":
        raise ValueError(f"an English-only model only transcribes English, got language={language!r} task={task!r}")
    if not timestamps:
        prefix.append(tokens.no_timestamps)
    return tuple(prefix)
