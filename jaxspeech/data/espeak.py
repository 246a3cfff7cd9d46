"""eSpeak NG speech synthesis and IPA phonemisation through ctypes.

The shared library and its data come from the ``espeakng-loader`` wheel, so no system package
is needed. eSpeak is a process-global C library: it is initialised once per process
(synchronous retrieval mode, IPA phoneme events on) and every call below sets the voice and all
prosody parameters it uses, so no setting leaks from one call into the next.

One caveat: eSpeak's wave generator keeps function-static state (pitch-flutter phase, voicing
phase, gain control) from one utterance to the next that no API call resets. Two calls with the
same arguments in one process can therefore differ in the last few samples. The corpus builder
(:mod:`jaxspeech.data.corpus`) synthesises each utterance in a freshly forked child of an
initialised process, which makes every utterance a pure function of its arguments.

Struct layout follows ``espeak-ng/speak_lib.h`` (API revision 12).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import re
import string
import threading

import numpy as np

# espeak_EVENT_TYPE values (speak_lib.h).
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_EVENT_PHONEME = 7

# espeak_PARAMETER values.
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_PARAM_WORDGAP = 7

_OUTPUT_MODE_SYNCHRONOUS = 0x0001  # espeak_ng_OUTPUT_MODE: retrieve audio, block until done
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PHONEMES_IPA = 0x02  # phonememode for espeak_TextToPhonemes
_ENS_OK = 0

RATE_LIMITS = (80, 450)  # words per minute, espeakRATE_MINIMUM / MAXIMUM
PAUSE = "_"  # name given to clause-final pauses, which eSpeak reports with an empty IPA name

_CLAUSE_PUNCTUATION = ",.;:!?"
_CLAUSE_BREAK = re.compile(r"(?<=[,.;:!?])\s+")  # punctuation then a space ends a clause; "3.5" does not


class ESpeakError(RuntimeError):
    """An eSpeak NG call failed; the message includes eSpeak's status text where it gave one."""


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),  # word and sentence events
        ("name", ctypes.c_char_p),  # mark and play events
        ("string", ctypes.c_char * 8),  # phoneme events: UTF-8, NUL-terminated unless 8 bytes long
    ]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character index into the input text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds from the start of the message
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclasses.dataclass(frozen=True)
class Synthesis:
    """One synthesised utterance.

    audio: int16 [S] at ``sample_rate``. words: (word, start_s, end_s) per eSpeak word event,
    in order, covering every word of the text (punctuation stripped): a word spoken as several
    (``42`` -> "forty two") is one entry, and unstressed function words eSpeak joins to the
    word before share its entry (``"Was the"``). phones: (IPA phone, start_s, end_s) per eSpeak
    phoneme event, tiling the utterance; a clause-final pause is one ``"_"`` entry; the linking
    glides and glottal gaps eSpeak reports without an IPA name are merged into the phone
    before them; zero-length events are dropped.
    """

    audio: np.ndarray
    sample_rate: int
    words: tuple[tuple[str, float, float], ...]
    phones: tuple[tuple[str, float, float], ...]

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / self.sample_rate

    def float_audio(self) -> np.ndarray:
        """float32 [S] in [-1, 1)."""
        return self.audio.astype(np.float32) / 32768.0


@dataclasses.dataclass(frozen=True)
class _RawEvent:
    kind: int
    text_position: int  # 0-based
    ms: int
    phone: str


class _Engine:
    """The initialised C library plus the buffers its synthesis callback fills."""

    def __init__(self):
        import espeakng_loader

        self.data_path = espeakng_loader.get_data_path()
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_ng_InitializePath.argtypes = [ctypes.c_char_p]
        lib.espeak_ng_InitializePath.restype = None
        lib.espeak_ng_Initialize.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.espeak_ng_ClearErrorContext.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.espeak_ng_ClearErrorContext.restype = None
        lib.espeak_ng_InitializeOutput.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p]
        lib.espeak_ng_GetSampleRate.argtypes = []
        lib.espeak_ng_GetStatusCodeMessage.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        lib.espeak_ng_GetStatusCodeMessage.restype = None
        lib.espeak_ng_SetPhonemeEvents.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_ng_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_Synthesize.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib = lib
        self.lock = threading.Lock()
        self._chunks: list[bytes] = []
        self._events: list[_RawEvent] = []
        self._callback_error: BaseException | None = None

        lib.espeak_ng_InitializePath(self.data_path.encode())
        context = ctypes.c_void_p()
        status = lib.espeak_ng_Initialize(ctypes.byref(context))
        lib.espeak_ng_ClearErrorContext(ctypes.byref(context))
        self.check(status, f"initialising eSpeak NG with data at {self.data_path}")
        self.check(lib.espeak_ng_InitializeOutput(_OUTPUT_MODE_SYNCHRONOUS, 0, None), "setting output mode")
        self.check(lib.espeak_ng_SetPhonemeEvents(1, 1), "enabling IPA phoneme events")
        # ctypes keeps no reference to a callback it hands to C: hold it for the process lifetime.
        self._callback = _SynthCallback(self._on_synth)
        lib.espeak_SetSynthCallback(self._callback)
        self.sample_rate = lib.espeak_ng_GetSampleRate()

    def check(self, status: int, doing: str) -> None:
        if status != _ENS_OK:
            buffer = ctypes.create_string_buffer(512)
            self.lib.espeak_ng_GetStatusCodeMessage(status, buffer, len(buffer))
            raise ESpeakError(f"eSpeak NG failed {doing}: {buffer.value.decode(errors='replace')} "
                              f"(status 0x{status & 0xFFFFFFFF:08x})")

    def _on_synth(self, wav, n_samples, events) -> int:
        # An exception raised here would be printed and swallowed by ctypes: keep it and abort.
        try:
            if wav and n_samples > 0:
                self._chunks.append(ctypes.string_at(wav, 2 * n_samples))
            i = 0
            while events[i].type != _EVENT_LIST_TERMINATED:
                event = events[i]
                if event.type in (_EVENT_WORD, _EVENT_PHONEME, _EVENT_END):
                    phone = ""
                    if event.type == _EVENT_PHONEME:
                        # ctypes turns a char[8] field into bytes cut at the first NUL; read raw memory
                        # because a name that fills all 8 bytes has no NUL.
                        raw = ctypes.string_at(ctypes.addressof(event) + _Event.id.offset, 8)
                        phone = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
                    self._events.append(_RawEvent(event.type, event.text_position - 1, event.audio_position, phone))
                i += 1
        except BaseException as error:  # noqa: BLE001 - re-raised after synthesis returns
            self._callback_error = error
            return 1  # abort synthesis
        return 0  # continue synthesis

    def set_voice(self, voice: str) -> None:
        # eSpeak silently ignores an unknown "+variant", so check the variant file ourselves.
        if "+" in voice:
            variant = voice.split("+", 1)[1]
            if variant not in list_variants():
                raise ESpeakError(f"unknown eSpeak voice variant {variant!r} in {voice!r}; "
                                  f"see espeak.list_variants()")
        self.check(self.lib.espeak_ng_SetVoiceByName(voice.encode()), f"setting voice {voice!r}")

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int):
        self.set_voice(voice)
        for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range),
                             (_PARAM_VOLUME, 100), (_PARAM_WORDGAP, 0)):
            self.check(self.lib.espeak_ng_SetParameter(param, value, 0), f"setting parameter {param}={value}")
        self.lib.espeak_ng_SetRandSeed(seed)
        self._chunks, self._events, self._callback_error = [], [], None
        encoded = text.encode("utf-8") + b"\0"
        status = self.lib.espeak_ng_Synthesize(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if self._callback_error is not None:
            raise ESpeakError(f"synthesis callback failed for {text!r}") from self._callback_error
        self.check(status, f"synthesising {text!r}")
        audio = np.frombuffer(b"".join(self._chunks), dtype="<i2").copy()
        return audio, self._events

    def phonemize(self, text: str, voice: str) -> str:
        self.set_voice(voice)
        clauses = []
        for clause in _CLAUSE_BREAK.split(text.strip()):
            buffer = ctypes.create_string_buffer(clause.encode("utf-8"))
            pointer = ctypes.c_void_p(ctypes.addressof(buffer))
            pieces = []
            while pointer.value:
                phonemes = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, _PHONEMES_IPA)
                pieces.append((phonemes or b"").decode("utf-8").strip())
            # eSpeak drops the clause punctuation; keep it, it carries phrasing and intonation.
            punctuation = clause[len(clause.rstrip(_CLAUSE_PUNCTUATION)):]
            clauses.append(" ".join(p for p in pieces if p) + punctuation)
        return " ".join(c for c in clauses if c)


@functools.cache
def _engine() -> _Engine:
    # The C library holds process-global state, so one engine per process is all there can be.
    return _Engine()


@functools.cache
def list_variants() -> tuple[str, ...]:
    """Names of the voice variants usable as ``"<language>+<variant>"`` (e.g. ``m3``, ``f2``)."""
    import espeakng_loader

    return tuple(sorted(os.listdir(os.path.join(espeakng_loader.get_data_path(), "voices", "!v"))))


def sample_rate() -> int:
    """eSpeak's output sample rate in Hz (22050 for its formant voices)."""
    return _engine().sample_rate


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def _word_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, word) character spans of whitespace-separated tokens, punctuation stripped."""
    spans, i = [], 0
    for token in text.split():
        i = text.index(token, i)
        word = token.strip(string.punctuation)
        if word:
            spans.append((i, i + len(token), word))
        i += len(token)
    return spans


def _align(text: str, events: list[_RawEvent], duration: float):
    """Turns raw events into word and phone intervals in seconds."""
    # Phoneme events without an IPA name are either the pause closing a clause (the run just
    # before an END event: "_:" "_") or linking glides and glottal gaps inside speech (";").
    phones: list[list] = []  # [name, start]
    pause_starts = []
    for e in events:
        if e.kind == _EVENT_PHONEME:
            phones.append([e.phone, e.ms / 1000.0])
        elif e.kind == _EVENT_END:
            k = len(phones)
            while k > 0 and phones[k - 1][0] in ("", PAUSE):
                k -= 1
            for phone in phones[k:]:
                phone[0] = PAUSE
            pause_starts.append(phones[k][1] if k < len(phones) else e.ms / 1000.0)
    intervals: list[list] = []
    for k, (name, start) in enumerate(phones):
        end = min(phones[k + 1][1] if k + 1 < len(phones) else duration, duration)
        if end <= start:
            continue
        if intervals and (not name or name == PAUSE == intervals[-1][0]):
            intervals[-1][2] = end  # a glide or gap belongs to the sound before it; pauses merge
        else:
            intervals.append([name or PAUSE, start, end])
    phone_intervals = tuple((name, start, end) for name, start, end in intervals)

    spans = _word_spans(text)
    event_starts: dict[int, list[float]] = {}  # token index -> starts of its word events
    for e in events:
        if e.kind == _EVENT_WORD:
            token = next((k for k, (a, b, _) in enumerate(spans) if a <= e.text_position < b), None)
            if token is not None:
                event_starts.setdefault(token, []).append(e.ms / 1000.0)
    # eSpeak speaks an unstressed function word together with the word before it and gives the
    # pair one event ("Was the", "in the"); such a token joins the preceding group.
    groups: list[list] = []  # [first token, last token, start, start of the group's last event]
    for token in range(len(spans)):
        starts = event_starts.get(token)
        if starts:
            first = 0 if not groups else token  # tokens before the first event join the first group
            groups.append([first, token, min(starts), max(starts)])
        elif groups:
            groups[-1][1] = token
    # eSpeak may date a word's event inside the preceding pause: start it where the pause ends.
    pauses = [(start, end) for name, start, end in phone_intervals if name == PAUSE]
    for group in groups:
        group[2] = next((end for start, end in pauses if start <= group[2] < end), group[2])
        group[3] = max(group[3], group[2])
    # A group ends where the next group, a pause, or the clause end begins.
    boundaries = [g[2] for g in groups] + pause_starts
    word_intervals = tuple(
        (" ".join(spans[t][2] for t in range(first, last + 1)), min(start, duration),
         min(min((b for b in boundaries if b > last_start), default=duration), duration))
        for first, last, start, last_start in groups
    )
    return word_intervals, phone_intervals


def synthesize(text: str, voice: str = "en-us", *, rate: int = 175, pitch: int = 50, pitch_range: int = 50,
               seed: int = 0) -> Synthesis:
    """Synthesises ``text`` with eSpeak NG.

    voice: a language or ``language+variant`` name, e.g. ``"en-us+f3"``. rate: words per minute
    in [80, 450]. pitch: base pitch in [0, 100] (50 = the voice's default). pitch_range: pitch
    variation in [0, 100] (0 = monotone, 50 = default). seed: seed of eSpeak's noise generator.
    Returns a :class:`Synthesis` (int16 audio at 22050 Hz plus word and phone timings).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    _check_int("rate", rate, *RATE_LIMITS)
    _check_int("pitch", pitch, 0, 100)
    _check_int("pitch_range", pitch_range, 0, 100)
    engine = _engine()
    with engine.lock:
        audio, events = engine.synthesize(text, voice, int(rate), int(pitch), int(pitch_range), int(seed))
    duration = audio.shape[0] / engine.sample_rate
    words, phones = _align(text, events, duration)
    return Synthesis(audio=audio, sample_rate=engine.sample_rate, words=words, phones=phones)


def phonemize(text: str, voice: str = "en-us") -> str:
    """IPA phonemes of ``text`` in ``voice``'s language (espeak_TextToPhonemes, IPA mode).

    Clauses are joined by spaces and keep their closing punctuation, e.g.
    ``"After the rain, she left."`` -> ``"ˈæftɚ ðə ɹˈeɪn, ʃiː lˈɛft."``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    engine = _engine()
    with engine.lock:
        return engine.phonemize(text, voice)
