"""Prosody statistics: pause detection and comma matching on signals with known pauses,
terminal F0 direction on known rising/falling tones, F0 agreement on known detunings, and all on real
eSpeak utterances."""

import numpy as np
import pytest

from jaxspeech.audio import log_mel
from jaxspeech.eval import (
    comma_pause_mae,
    comma_pauses,
    contour_shares,
    detect_pauses,
    expected_direction,
    f0_agreement,
    intonation_scores,
    judged_directions,
    mel_terminal_direction,
    terminal_direction,
)

SR = 22050


def _voiced(seconds, f0_start=150.0, f0_end=None, seed=0):
    """Harmonic 'vowel' whose F0 glides linearly (in Hz) from f0_start to f0_end, plus a little noise."""
    f0_end = f0_start if f0_end is None else f0_end
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0_start + (f0_end - f0_start) * t / seconds) / SR
    x = 0.3 * sum(np.sin(k * phase) / k for k in range(1, 8))
    return (x + 0.003 * np.random.default_rng(seed).standard_normal(t.shape)).astype(np.float32)


def _silence(seconds):
    return np.zeros(int(round(seconds * SR)), np.float32)


def _utterance(segments, gaps, lead=0.15, tail=0.2):
    """Speech segments of the given durations separated by silent gaps (seconds)."""
    parts = [_silence(lead)]
    for k, seconds in enumerate(segments):
        parts.append(_voiced(seconds, seed=k))
        if k < len(gaps):
            parts.append(_silence(gaps[k]))
    return np.concatenate(parts + [_silence(tail)])


def test_detect_pauses_finds_known_silences_and_skips_short_gaps():
    x = _utterance([0.4, 0.3, 0.04 + 0.3, 0.5], [0.2, 0.04, 0.35])  # a 40 ms closure-like gap
    pauses = detect_pauses(x, SR)
    expected = np.array([[0.55, 0.75], [1.43, 1.78]])  # the 40 ms gap is below min_pause_ms
    np.testing.assert_allclose(pauses, expected, atol=0.011)
    assert detect_pauses(_silence(0.5), SR).shape == (0, 2)
    assert detect_pauses(_voiced(0.5), SR).shape == (0, 2)


def test_comma_pauses_pair_pauses_with_commas():
    x = _utterance([0.5, 0.4, 0.6], [0.25, 0.15])
    np.testing.assert_allclose(comma_pauses(x, SR, "Well now, here we go, all of us."), [0.25, 0.15], atol=0.011)
    # More pauses than commas: the longest one is the comma pause.
    np.testing.assert_allclose(comma_pauses(x, SR, "Well now here we go, all of us."), [0.25], atol=0.011)
    # Fewer pauses than commas: each goes to the comma at the matching relative position;
    # the pause sits ~40 % into the speech, next to the second of three commas.
    x = _utterance([0.6, 0.9], [0.3])
    durations = comma_pauses(x, SR, "One, two three four, five six seven eight, nine ten.")
    np.testing.assert_allclose(durations, [0.0, 0.3, 0.0], atol=0.011)
    assert comma_pauses(x, SR, "No commas here.").shape == (0,)
    reference = _utterance([0.5, 0.4, 0.6], [0.25, 0.15])
    synthesized = _utterance([0.5, 0.4, 0.6], [0.10, 0.25])
    scores = comma_pause_mae([synthesized], [reference], ["Well now, here we go, all of us."], SR)
    assert scores["commas"] == 2
    assert scores["comma_pause_mae_s"] == pytest.approx((0.15 + 0.10) / 2, abs=0.011)


def test_terminal_direction_on_known_tones():
    head = _voiced(0.5, 180.0, 160.0)
    rising = np.concatenate([head, _silence(0.1), _voiced(0.4, 160.0, 240.0), _silence(0.3)])
    falling = np.concatenate([head, _silence(0.1), _voiced(0.4, 200.0, 130.0), _silence(0.3)])
    # A rise earlier in the utterance does not matter, only its end does.
    late_fall = np.concatenate([_voiced(0.6, 130.0, 250.0), _voiced(0.4, 250.0, 180.0), _silence(0.3)])
    assert terminal_direction(rising, SR) == "rising"
    assert terminal_direction(falling, SR) == "falling"
    assert terminal_direction(late_fall, SR) == "falling"
    scores = intonation_scores(
        [rising, falling, falling, late_fall, rising],
        ["Is it red?", "It is red.", "Is it blue?", "Stop!", "Hmm"],
        SR,
    )
    assert scores == {"question_rising": 0.5, "statement_falling": 1.0, "contour_accuracy": 0.75,
                      "questions": 2, "statements": 2}


def test_judged_directions_read_only_punctuated_texts_and_silence_is_a_miss():
    rising = np.concatenate([_voiced(0.5, 160.0, 240.0), _silence(0.3)])
    read = []

    def direction(audio):
        read.append(len(audio))
        return terminal_direction(audio, SR)

    texts = ["Is it red?", "Is it red?", "Hmm", "It is red."]
    directions = judged_directions([rising, _silence(0.5), rising, rising], texts, direction)
    assert directions == ["rising", None, None, "rising"] and len(read) == 3  # "Hmm" is never measured
    assert contour_shares(directions, texts) == {"question_rising": 0.5, "statement_falling": 0.0,
                                                 "contour_accuracy": 1 / 3, "questions": 2, "statements": 1}
    with pytest.raises(ValueError, match="3 signals but 4 texts"):
        judged_directions([rising] * 3, texts, direction)


def test_the_direction_read_off_the_mel_alone_matches_the_audio():
    head = _voiced(0.5, 180.0, 160.0)
    rising = np.concatenate([head, _silence(0.1), _voiced(0.4, 160.0, 240.0), _silence(0.3)])
    late_fall = np.concatenate([_voiced(0.6, 130.0, 250.0), _voiced(0.4, 250.0, 180.0), _silence(0.3)])
    mels = [np.asarray(log_mel(x, "tts_22k")) for x in (rising, late_fall)]
    assert [mel_terminal_direction(m) for m in mels] == ["rising", "falling"]
    with pytest.raises(ValueError, match="no voiced frame"):
        mel_terminal_direction(np.full((30, 80), -11.5, np.float32))


def test_f0_agreement_measures_known_detunings_and_voicing():
    reference = np.concatenate([_silence(0.1), _voiced(0.6, 150.0), _voiced(0.3, 150.0, 200.0, seed=1),
                                _silence(0.2)])  # fmt: skip
    same = f0_agreement(reference, reference, SR)
    assert same["f0_cents"] == 0.0 and same["voicing_agreement"] == 1.0 == same["tail_voicing_agreement"]
    # A semitone up everywhere: 100 cents over all frames and in the tail.
    semitone = np.concatenate([_silence(0.1), _voiced(0.6, 150.0 * 2 ** (1 / 12)),
                               _voiced(0.3, 150.0 * 2 ** (1 / 12), 200.0 * 2 ** (1 / 12), seed=1), _silence(0.2)])
    detuned = f0_agreement(semitone, reference, SR)
    assert detuned["f0_cents"] == pytest.approx(100.0, abs=5.0)
    assert detuned["tail_f0_cents"] == pytest.approx(100.0, abs=10.0)
    # Whispering the glide (noise where the reference is voiced): the tail loses its voicing.
    whisper = reference.copy()
    start, stop = int(0.7 * SR), int(1.0 * SR)
    whisper[start:stop] = 0.1 * np.random.default_rng(2).standard_normal(stop - start)
    breathy = f0_agreement(whisper, reference, SR)
    assert breathy["tail_voicing_agreement"] < 0.2 < 0.6 < breathy["voicing_agreement"]
    with pytest.raises(ValueError, match="no voiced frame"):
        f0_agreement(reference, _silence(1.0), SR)


def test_expected_direction_and_bad_inputs():
    assert expected_direction("Did you go?") == "rising"
    assert expected_direction('He said "go."') == "falling"
    assert expected_direction("Stop!") == "falling"
    assert expected_direction("and then") is None
    with pytest.raises(ValueError, match="16000 Hz"):
        terminal_direction(_voiced(0.3), 16000)
    with pytest.raises(ValueError, match="no voiced frame"):
        terminal_direction(_silence(0.5), SR)
    with pytest.raises(ValueError, match="1-D"):
        detect_pauses(np.zeros((2, 100)), SR)
    with pytest.raises(ValueError, match="non-empty string"):
        comma_pauses(_voiced(0.3), SR, " ")


def test_espeak_question_rises_statement_falls_and_comma_pauses_match_timings():
    from jaxspeech.data import espeak

    # eSpeak keeps some wave-generator state between calls in one process (only the last few
    # samples can differ), which these checks do not depend on.
    question = espeak.synthesize("Did you see the red boat?", "en-us+f3")
    text = "After the rain, she sold three large melons."
    statement = espeak.synthesize(text, "en-us+f3")
    assert terminal_direction(question.float_audio(), question.sample_rate) == "rising"
    assert terminal_direction(statement.float_audio(), statement.sample_rate) == "falling"
    # eSpeak reports the comma pause as a "_" phone; the detector measures it from audio alone.
    timed = [end - start for phone, start, end in statement.phones
             if phone == "_" and end < statement.duration - 0.05]
    assert len(timed) == 1
    measured = comma_pauses(statement.float_audio(), statement.sample_rate, text)
    np.testing.assert_allclose(measured, timed, atol=0.03)
