import ctypes
import string

import numpy as np
import pytest

from jaxspeech.data import espeak

SENTENCE = "After the rain, she bought 42 apples."


def _tokens(text):
    return [w for w in (t.strip(string.punctuation) for t in text.split()) if w]


def _rms(audio, sample_rate, start, end):
    piece = audio[int(start * sample_rate): int(end * sample_rate)].astype(np.float64)
    return float(np.sqrt(np.mean(piece**2))) if piece.size else 0.0


def _median_f0(audio, sample_rate):
    """Median autocorrelation F0 (Hz) over loud 40 ms frames: an independent pitch estimate."""
    x = audio.astype(np.float64)
    frame, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    lags = np.arange(int(sample_rate / 400), int(sample_rate / 60))
    threshold = 0.3 * np.sqrt(np.mean(x**2))
    f0s = []
    for start in range(0, len(x) - frame - lags[-1], hop):
        seg = x[start: start + frame]
        if np.sqrt(np.mean(seg**2)) < threshold:
            continue
        ac = np.array([np.dot(seg, x[start + lag: start + lag + frame]) for lag in lags])
        f0s.append(sample_rate / lags[np.argmax(ac)])
    return float(np.median(f0s))


def test_event_struct_matches_speak_lib_h():
    # speak_lib.h: 6 x 4-byte ints, a pointer, then a union of int / char* / char[8].
    pointer = ctypes.sizeof(ctypes.c_void_p)
    offsets = {name: getattr(espeak._Event, name).offset for name, _ in espeak._Event._fields_}
    assert [offsets[n] for n in ("type", "unique_identifier", "text_position", "length", "audio_position",
                                 "sample")] == [0, 4, 8, 12, 16, 20]
    assert offsets["user_data"] == 24
    assert offsets["id"] == 24 + pointer
    assert ctypes.sizeof(espeak._Event) == 24 + pointer + max(pointer, 8)


def test_synthesize_audio_and_word_timings():
    result = espeak.synthesize(SENTENCE, "en-us+f3", seed=3)
    assert result.sample_rate == espeak.sample_rate() == 22050
    assert result.audio.dtype == np.int16 and result.audio.ndim == 1
    assert 1.0 < result.duration < 5.0
    assert np.abs(result.audio).max() > 3000
    as_float = result.float_audio()
    assert as_float.dtype == np.float32 and -1.0 <= as_float.min() and as_float.max() < 1.0

    # Words: in order, non-overlapping, inside the audio, and covering every text word.
    assert " ".join(w for w, _, _ in result.words).split() == _tokens(SENTENCE)
    assert "42" in [w for w, _, _ in result.words]  # spoken as two eSpeak words, one entry here
    for (_, start, end), (_, next_start, _) in zip(result.words, result.words[1:]):
        assert 0.0 <= start < end <= next_start + 1e-9
    assert result.words[-1][2] <= result.duration
    # Timings match the signal: every word is loud, the comma pause between "rain" and "she" is quiet.
    loud = [_rms(result.audio, 22050, s, e) for _, s, e in result.words]
    rain_end = dict((w, e) for w, _, e in result.words)["rain"]
    she_start = dict((w, s) for w, s, _ in result.words)["she"]
    assert she_start - rain_end > 0.08
    pause = _rms(result.audio, 22050, rain_end + 0.02, she_start - 0.02)
    assert pause < 0.1 * min(loud)


def test_phone_events_are_ipa_and_ordered():
    result = espeak.synthesize(SENTENCE, "en-us")
    names = [p for p, _, _ in result.phones]
    assert "ð" in names and "ɹ" in names and espeak.PAUSE in names
    starts = [s for _, s, _ in result.phones]
    assert starts == sorted(starts)
    assert all(0 <= s < e <= result.duration for _, s, e in result.phones)
    for (_, _, end), (_, start, _) in zip(result.phones, result.phones[1:]):
        assert end == pytest.approx(start)  # phones tile the utterance


def test_clause_pause_is_one_phone_between_words_and_glides_are_merged():
    # "Julia" has a linking glide eSpeak reports without an IPA name: it must not become a pause.
    result = espeak.synthesize("Julia, please buy those happy dolls.", "en-us+m2")
    assert all(name for name, _, _ in result.phones)
    pauses = [(s, e) for name, s, e in result.phones if name == espeak.PAUSE]
    assert len(pauses) == 2 and pauses[-1][1] == pytest.approx(result.duration)  # comma pause + final pause
    words = {w: (s, e) for w, s, e in result.words}
    assert words["Julia"][1] == pytest.approx(pauses[0][0])
    assert words["please"][0] == pytest.approx(pauses[0][1])
    for _, start, end in result.words:
        assert all(end <= p_start + 1e-9 or start >= p_end - 1e-9 for p_start, p_end in pauses)


def test_phonemize_matches_espeak_ipa_and_keeps_punctuation():
    assert espeak.phonemize("Hello world.") == "həlˈoʊ wˈɜːld."
    phonemes = espeak.phonemize(SENTENCE, "en-us+m3")
    assert phonemes.startswith("ˈæftɚ ðə ɹˈeɪn, ")
    assert "fˈɔːɹɾi tˈuː" in phonemes and phonemes.endswith(".")
    assert espeak.phonemize("Is it 3.5 metres?").endswith("?")  # "3.5" is not a clause break
    assert "pɔɪnt" in espeak.phonemize("Is it 3.5 metres?")


def test_rate_and_pitch_parameters_take_effect():
    slow = espeak.synthesize("The farmer carried six heavy baskets.", "en-us+m1", rate=110)
    fast = espeak.synthesize("The farmer carried six heavy baskets.", "en-us+m1", rate=330)
    assert slow.duration > 2.0 * fast.duration
    low = espeak.synthesize("We were all away in Maryland all year.", "en-us+m1", pitch=10)
    high = espeak.synthesize("We were all away in Maryland all year.", "en-us+m1", pitch=90)
    assert _median_f0(high.audio, 22050) > 1.3 * _median_f0(low.audio, 22050)
    male = espeak.synthesize("We were all away in Maryland all year.", "en-us+m1")
    female = espeak.synthesize("We were all away in Maryland all year.", "en-us+f2")
    assert _median_f0(female.audio, 22050) > 1.4 * _median_f0(male.audio, 22050)


def test_bad_input_gives_clear_errors():
    with pytest.raises(espeak.ESpeakError, match="variant 'nosuch'"):
        espeak.synthesize("Hello.", "en-us+nosuch")
    with pytest.raises(espeak.ESpeakError, match="does not exist"):
        espeak.synthesize("Hello.", "zz-qq")
    with pytest.raises(ValueError, match="rate"):
        espeak.synthesize("Hello.", rate=20)
    with pytest.raises(ValueError, match="pitch"):
        espeak.synthesize("Hello.", pitch=101)
    with pytest.raises(ValueError, match="non-empty"):
        espeak.synthesize("   ")
    with pytest.raises(ValueError, match="non-empty"):
        espeak.phonemize("")
    assert {"m1", "f3"} <= set(espeak.list_variants())
