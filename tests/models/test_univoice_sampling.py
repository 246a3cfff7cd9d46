"""UniVoice inference: cached transcription equals teacher-forced argmax over the full sequence; infilling keeps
the prompt, stops at each row's length, and without guidance is the plain Euler integral of the model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.models import llm
from jaxspeech.models.univoice.config import UniVoiceConfig
from jaxspeech.models.univoice.model import Rows, apply, init
from jaxspeech.models.univoice.sampling import frames_for_text, infill, transcribe

F, V = 16, 30
CONFIG = UniVoiceConfig(llm=llm.llm_config("tiny", vocab_size=V, num_layers=2, initializer_range=0.3), n_mels=F,
                        encoder_dim=32, encoder_layers=1, encoder_heads=2, encoder_conv_kernel=5,
                        encoder_subsampling_channels=4)  # fmt: skip


@pytest.fixture(scope="module")
def model():
    graphdef, params = init(CONFIG, jax.random.key(0))
    params["out"]["kernel"] = jax.random.normal(jax.random.key(1), params["out"]["kernel"].shape) * 0.1
    return graphdef, params


def _teacher_forced_greedy(graphdef, params, features, lengths, prompt, steps):
    """Argmax decoding by re-running the whole sequence (no cache) for every new token."""
    text = np.asarray(prompt)
    for _ in range(steps):
        batch, length = text.shape
        rows = Rows(jnp.asarray(text), jnp.full((batch,), length), features, lengths, None, None,
                    jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,)))  # fmt: skip
        logits = apply(graphdef, params, rows).text_logits[:, -1]
        text = np.concatenate([text, np.asarray(jnp.argmax(logits, -1))[:, None]], axis=1)
    return text[:, prompt.shape[1]:]


def test_cached_transcription_equals_teacher_forced_argmax_with_padded_audio(model):
    graphdef, params = model
    features = jax.random.normal(jax.random.key(2), (2, 48, F))
    lengths = jnp.array([48, 30])  # the second row's speech embeddings are padded
    prompt = jnp.array([[1, 5], [1, 5]])
    decoded = transcribe(graphdef, params, features, lengths, prompt[0], max_new_tokens=6, eos_id=V - 1)
    expected = _teacher_forced_greedy(graphdef, params, features, lengths, prompt, 6)
    for row, length in enumerate(np.asarray(decoded.lengths)):
        np.testing.assert_array_equal(np.asarray(decoded.tokens)[row, :length], expected[row, :length])
    assert np.asarray(decoded.lengths).max() >= 3
    beam = transcribe(graphdef, params, features, lengths, prompt, max_new_tokens=6, eos_id=V - 1, beam_size=1)
    np.testing.assert_array_equal(beam.tokens, decoded.tokens)  # a beam of one is greedy
    with pytest.raises(ValueError, match="prompt must be"):
        transcribe(graphdef, params, features, lengths, jnp.zeros((3, 2), jnp.int32), max_new_tokens=2, eos_id=0)


def test_infill_keeps_the_prompt_and_is_the_euler_integral_without_guidance(model):
    graphdef, params = model
    text, text_lengths = jnp.array([[3, 4, 5, 6], [7, 8, 9, 0]]), jnp.array([4, 3])
    prompt = jax.random.normal(jax.random.key(3), (2, 10, F))
    prompt_lengths, frame_lengths = jnp.array([4, 0]), jnp.array([10, 7])
    key, steps = jax.random.key(4), 3
    mel = infill(graphdef, params, key, text, text_lengths, prompt, prompt_lengths, frame_lengths, steps=steps,
                 guidance_scale=0.0, sway=0.0)  # fmt: skip
    np.testing.assert_array_equal(mel[0, :4], prompt[0, :4])
    assert np.all(np.asarray(mel[1, 7:]) == 0)
    cond = jnp.where((jnp.arange(10)[None, :] < prompt_lengths[:, None])[..., None], prompt, 0.0)
    x = jax.random.normal(key, prompt.shape)
    for i in range(steps):  # uniform grid (sway 0): x <- x + v(x, t) / steps
        rows = Rows(text, text_lengths, None, jnp.zeros(2, jnp.int32), x, cond, frame_lengths, jnp.full(2, i / steps))
        x = x + apply(graphdef, params, rows).velocity / steps
    np.testing.assert_allclose(mel[0, 4:], x[0, 4:], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(mel[1, :7], x[1, :7], atol=1e-4, rtol=1e-4)
    guided = infill(graphdef, params, key, text, text_lengths, prompt, prompt_lengths, frame_lengths, steps=steps)
    assert np.isfinite(np.asarray(guided)).all() and np.abs(np.asarray(guided - mel)).max() > 1e-4


def test_frames_for_text_follows_the_prompts_speaking_rate():
    np.testing.assert_array_equal(frames_for_text([100, 40], [20, 8], [10, 0]), [50, 1])


def test_joint_ctc_decoding_ignores_padded_audio_and_needs_a_beam(model):
    # The encoder's CTC scores read each row's own frames only: what fills the padding changes nothing.
    graphdef, params = model
    features = jax.random.normal(jax.random.key(5), (2, 48, F))
    lengths = jnp.array([48, 30])
    noisy = features.at[1, 30:].set(jax.random.normal(jax.random.key(6), (18, F)) * 5)
    common = dict(max_new_tokens=6, eos_id=V - 1, beam_size=3, ctc_weight=0.5)
    joint = transcribe(graphdef, params, features, lengths, jnp.array([1, 5]), **common)
    np.testing.assert_array_equal(transcribe(graphdef, params, noisy, lengths, jnp.array([1, 5]), **common).tokens,
                                  joint.tokens)
    llm_alone = transcribe(graphdef, params, features, lengths, jnp.array([1, 5]), **{**common, "ctc_weight": 0.0})
    assert np.isfinite(np.asarray(joint.scores)).all() and not np.array_equal(joint.scores, llm_alone.scores)
    with pytest.raises(ValueError, match="beam_size"):
        transcribe(graphdef, params, features, lengths, jnp.array([1, 5]), max_new_tokens=2, eos_id=V - 1,
                   ctc_weight=0.5)
