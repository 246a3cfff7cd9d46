import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.data.specaugment import spec_augment

B, T, F = 4, 60, 16
LENGTHS = np.array([60, 41, 20, 0])


def _inputs(seed=0):
    mel = jax.random.normal(jax.random.key(seed), (B, T, F)) - 5.0
    mask = jnp.arange(T)[None, :] < jnp.asarray(LENGTHS)[:, None]
    return mel, mask


def _changed(out, mel):
    return np.asarray(out) != np.asarray(mel)


def test_masks_only_valid_frames_with_the_utterance_mean_and_bounded_fractions():
    mel, mask = _inputs()
    augment = jax.jit(
        lambda m, k: spec_augment(m, mask, k, num_freq_masks=2, max_freq_width=3, num_time_masks=3, max_time_ratio=0.1)
    )
    total_changed = 0
    for seed in range(20):
        out = augment(mel, jax.random.key(seed))
        changed = _changed(out, mel)
        total_changed += changed.sum()
        for b, length in enumerate(LENGTHS):
            assert not changed[b, length:].any()  # padding untouched
            if length == 0:
                continue
            mean = np.asarray(mel)[b, :length].mean()
            np.testing.assert_allclose(np.asarray(out)[b][changed[b]], mean, rtol=1e-5)
            # Masked cells form whole rows (time) and columns (freq) of the valid block.
            block = changed[b, :length]
            full_cols = block.all(axis=0)
            full_rows = block.all(axis=1)
            np.testing.assert_array_equal(block, full_rows[:, None] | full_cols[None, :])
            assert full_cols.sum() <= 2 * 3 or full_rows.all()
            assert full_rows.sum() <= 3 * int(0.1 * length) or full_cols.all()
    assert total_changed > 0


def test_widths_cover_their_whole_range():
    # Uniform widths in [0, max]: over many draws a single time mask reaches every width.
    mel, mask = _inputs()
    widths = set()
    for seed in range(60):
        out = spec_augment(mel, mask, jax.random.key(seed), num_freq_masks=0, num_time_masks=1, max_time_ratio=0.05)
        widths.add(int(_changed(out, mel)[0].all(axis=1).sum()))
    assert widths == {0, 1, 2, 3}  # floor(0.05 * 60) = 3


def test_deterministic_for_a_key_and_different_across_keys():
    mel, mask = _inputs()
    a = spec_augment(mel, mask, jax.random.key(1))
    np.testing.assert_array_equal(a, spec_augment(mel, mask, jax.random.key(1)))
    assert not np.array_equal(a, spec_augment(mel, mask, jax.random.key(2)))


def test_zero_masks_is_identity_and_padding_garbage_is_ignored():
    mel, mask = _inputs()
    out = spec_augment(mel, mask, jax.random.key(0), num_freq_masks=0, num_time_masks=0)
    np.testing.assert_array_equal(out, mel)
    noisy = jnp.where(mask[..., None], mel, jnp.nan)
    out = spec_augment(noisy, mask, jax.random.key(3))
    assert np.all(np.isfinite(np.asarray(out)[np.asarray(mask)]))


def test_rejects_negative_settings():
    mel, mask = _inputs()
    with pytest.raises(ValueError, match="non-negative"):
        spec_augment(mel, mask, jax.random.key(0), num_time_masks=-1)
