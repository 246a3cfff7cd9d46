"""real_time_factor / time_call: warm-up excluded, outputs waited on, median of repeats."""

import jax.numpy as jnp
import pytest

import jaxspeech.eval.rtf as rtf_module
from jaxspeech.eval import real_time_factor, time_call


class _FakeClock:
    """perf_counter stand-in: time advances only when the timed function says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Output:
    def __init__(self):
        self.waited = False

    def block_until_ready(self):
        self.waited = True
        return self


def test_rtf_excludes_warmup_and_takes_the_median(monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(rtf_module, "perf_counter", clock)
    durations = iter([100.0, 100.0, 0.3, 0.1, 0.2, 5.0, 0.2])  # 2 warm-up calls, then 5 timed
    outputs = []

    def fn(x, *, scale):
        assert (x, scale) == (1, 2)
        clock.now += next(durations)
        outputs.append(_Output())
        return {"audio": outputs[-1]}

    rtf = real_time_factor(fn, 1, scale=2, audio_seconds=4.0, warmup=2, repeats=5)
    assert rtf == pytest.approx(0.2 / 4.0)
    assert len(outputs) == 7 and all(o.waited for o in outputs)


def test_time_call_on_a_jitted_function_and_bad_arguments():
    seconds = time_call(jnp.cumsum, jnp.ones(1000), repeats=2)
    assert seconds >= 0.0
    with pytest.raises(ValueError, match="audio_seconds"):
        real_time_factor(jnp.cumsum, jnp.ones(3), audio_seconds=0.0)
    with pytest.raises(ValueError, match="repeats"):
        time_call(jnp.cumsum, jnp.ones(3), repeats=0)


def test_interleaved_seconds_alternates_calls_after_one_warmup_each(monkeypatch):
    clock, order = _FakeClock(), []
    monkeypatch.setattr(rtf_module, "perf_counter", clock)

    def call(name, seconds):
        def run():
            order.append(name)
            clock.now += seconds
            return name
        return run

    outputs, times = rtf_module.interleaved_seconds({"a": call("a", 1.0), "b": call("b", 3.0)}, repeats=2)
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert outputs == {"a": "a", "b": "b"} and times == {"a": [1.0, 1.0], "b": [3.0, 3.0]}
