"""Text front end: normalisation and tokenizers with explicit vocab files."""

from jaxspeech.text.normalize import normalize_for_asr
from jaxspeech.text.tokenizer import Tokenizer, UnknownSymbolError

__all__ = ["Tokenizer", "UnknownSymbolError", "normalize_for_asr"]
