import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.nn.length_regulator import durations_from_log, length_regulate


def matcha_generate_path(durations, max_frames):
    """numpy port of Matcha's generate_path: token i covers frames j with c_{i-1} <= j < c_i."""
    ends = np.cumsum(durations, axis=1)
    covered = np.arange(max_frames)[None, None, :] < ends[:, :, None]
    return covered.astype(np.float32) - np.pad(covered, ((0, 0), (1, 0), (0, 0)))[:, :-1].astype(np.float32)


def test_integer_durations_repeat_tokens():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3, 4, 2)).astype(np.float32)
    durations = np.array([[2, 0, 3, 1], [1, 4, 9, 9], [0, 0, 0, 0]])
    text_mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]], bool)
    out, mask = length_regulate(jnp.asarray(features), jnp.asarray(durations), jnp.asarray(text_mask), 8)
    for b in range(3):
        expected = np.repeat(features[b][text_mask[b]], durations[b][text_mask[b]], axis=0)
        np.testing.assert_array_equal(out[b, : len(expected)], expected)
        np.testing.assert_array_equal(mask[b], np.arange(8) < len(expected))
        np.testing.assert_array_equal(out[b, len(expected) :], 0.0)


def test_fractional_durations_follow_matcha_generate_path():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(2, 5, 3)).astype(np.float32)
    durations = np.array([[1.5, 3.0, 0.4, 2.2, 1.0], [3.3, 3.3, 3.3, 0.0, 0.0]], np.float32)
    text_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    out, mask = jax.jit(length_regulate, static_argnums=3)(
        jnp.asarray(features), jnp.asarray(durations), jnp.asarray(text_mask), 12
    )
    path = matcha_generate_path(durations * text_mask, 12)
    np.testing.assert_allclose(out, np.einsum("bif,bij->bjf", features, path), atol=1e-6)
    np.testing.assert_array_equal(mask, path.sum(1) > 0)
    assert mask.sum(1).tolist() == [9, 10]  # ceil(8.1), ceil(9.9)


def test_durations_from_log():
    logw = jnp.log(jnp.array([[2.3, 0.2, 3.6, 7.0]]))
    mask = jnp.array([[True, True, True, False]])
    np.testing.assert_allclose(durations_from_log(logw, mask), [[3.0, 1.0, 4.0, 0.0]])
    np.testing.assert_allclose(durations_from_log(logw, mask, length_scale=1.5), [[4.5, 1.5, 6.0, 0.0]])
    np.testing.assert_allclose(durations_from_log(logw, mask, rounding="round"), [[2.0, 1.0, 4.0, 0.0]])
    with pytest.raises(ValueError, match="length_scale"):
        durations_from_log(logw, mask, length_scale=0.0)
    with pytest.raises(ValueError, match="rounding"):
        durations_from_log(logw, mask, rounding="floor")


def test_bad_inputs():
    features, mask = jnp.zeros((1, 2, 3)), jnp.ones((1, 2), bool)
    with pytest.raises(ValueError, match="need 7 frames"):
        length_regulate(features, jnp.array([[3, 4]]), mask, 6)
    with pytest.raises(ValueError, match=">= 0"):
        length_regulate(features, jnp.array([[3, -1]]), mask, 6)
    with pytest.raises(ValueError, match="max_frames"):
        length_regulate(features, jnp.array([[3, 1]]), mask, 6.0)
