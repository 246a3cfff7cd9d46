"""Text normalisation for recognition targets.

ASR targets are lower-case words over ``[a-z' ]``: numbers are spelled out (the audio says
"forty two", not "42"), hyphens become spaces and other punctuation is removed, so the
target is what a listener can hear.
"""

import re
import unicodedata

from num2words import num2words

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DROPPED = re.compile(r"[^a-z' ]+")
_SPACES = re.compile(r"\s+")


def _spell_number(match: re.Match) -> str:
    return " " + num2words(float(match.group()) if "." in match.group() else int(match.group())) + " "


def normalize_for_asr(text: str) -> str:
    """Lower-cases, spells out numbers, keeps ``[a-z' ]`` and collapses whitespace.

    >>> normalize_for_asr("Did you see 42 red boats?")
    'did you see forty two red boats'
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = _NUMBER.sub(_spell_number, text).lower()
    text = text.replace("-", " ").replace(",", " ")
    text = _DROPPED.sub("", text)
    return _SPACES.sub(" ", text).strip()
