import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech.losses.flow_matching import conditional_flow_matching, optimal_transport_path


def _batch(rng, batch=3, frames=7, feats=4):
    lengths = np.array([frames, 4, 1])[:batch]
    mel = rng.normal(size=(batch, frames, feats)).astype(np.float32)
    mask = np.arange(frames)[None] < lengths[:, None]
    mel[~mask] = 1e6  # padding garbage must not leak into the loss
    return {"x1": jnp.asarray(mel), "mask": jnp.asarray(mask), "cond": jnp.asarray(mel)}


def oracle_field(sigma_min, offset_valid=0.0, offset_padding=0.0, mask=None):
    """The exact conditional velocity, recovered from x_t and the data x1 passed as cond.

    From x_t = (1 - (1 - s) t) z + t x1 follows z = (x_t - t x1) / (1 - (1 - s) t) and the target
    x1 - (1 - s) z. ``offset_*`` adds a known error inside / outside ``mask``.
    """

    def field(x_t, t, x1):
        t = t[:, None, None]
        z = (x_t - t * x1) / (1 - (1 - sigma_min) * t)
        velocity = x1 - (1 - sigma_min) * z
        if mask is None:
            return velocity + offset_valid
        return velocity + jnp.where(mask[..., None], offset_valid, offset_padding)

    return field


@pytest.mark.parametrize("sigma_min", [0.0, 1e-4, 0.3])
def test_exact_velocity_gives_zero_loss(sigma_min):
    batch = _batch(np.random.default_rng(0))
    batch["x1"] = jnp.where(batch["mask"][..., None], batch["x1"], 0.0)  # finite for the oracle
    batch["cond"] = batch["x1"]
    loss, metrics = conditional_flow_matching(oracle_field(sigma_min), key=jax.random.key(1), sigma_min=sigma_min, **batch)
    assert float(loss) < 1e-8
    assert float(metrics["flow_mse"]) == float(loss)


def test_wrong_sigma_min_is_penalised():
    batch = _batch(np.random.default_rng(0))
    batch["x1"] = jnp.where(batch["mask"][..., None], batch["x1"], 0.0)
    batch["cond"] = batch["x1"]
    loss, _ = conditional_flow_matching(oracle_field(0.0), key=jax.random.key(1), sigma_min=0.3, **batch)
    assert float(loss) > 1e-2


def test_masked_mean_over_frames_and_features():
    """An error of exactly 1 on valid frames and huge on padding gives loss 1 (Matcha's normaliser)."""
    batch = _batch(np.random.default_rng(1))
    mel = jnp.where(batch["mask"][..., None], batch["x1"], 0.0)
    batch["cond"] = mel
    batch["x1"] = mel
    field = oracle_field(1e-4, offset_valid=1.0, offset_padding=1e3, mask=batch["mask"])
    loss, _ = conditional_flow_matching(field, key=jax.random.key(2), **batch)
    np.testing.assert_allclose(float(loss), 1.0, rtol=1e-4)


def test_loss_mask_restricts_to_infill_span():
    batch = _batch(np.random.default_rng(2))
    mel = jnp.where(batch["mask"][..., None], batch["x1"], 0.0)
    batch["cond"] = batch["x1"] = mel
    span = np.zeros(batch["mask"].shape, bool)
    span[0, 2:5] = True
    span[1, 1:4] = True
    span[2, 0] = True
    batch["mask"] = batch["mask"] & jnp.asarray(span)  # the caller ANDs the loss span into the mask
    field = oracle_field(0.0, offset_valid=2.0, offset_padding=-7.0, mask=jnp.asarray(span))
    loss, _ = conditional_flow_matching(field, key=jax.random.key(3), sigma_min=0.0, **batch)
    np.testing.assert_allclose(float(loss), 4.0, rtol=1e-4)


def test_time_range_and_given_times():
    batch = _batch(np.random.default_rng(3), batch=3)
    seen = {}

    def field(x_t, t, cond):
        seen["t"] = t
        return jnp.zeros_like(x_t)

    _, metrics = conditional_flow_matching(field, key=jax.random.key(4), sigma_min=0.0, t_min=0.9, t_max=1.0, **batch)
    assert seen["t"].shape == (3,)
    assert np.all((np.asarray(seen["t"]) >= 0.9) & (np.asarray(seen["t"]) < 1.0))
    assert len(set(np.asarray(seen["t"]).tolist())) == 3  # one time per sample

    _, metrics = conditional_flow_matching(field, key=jax.random.key(4), sigma_min=0.0, t=jnp.array([0.0, 0.5, 1.0]),
                                           **batch)
    np.testing.assert_array_equal(np.asarray(seen["t"]), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(float(metrics["t_mean"]), 0.5)


def test_path_endpoints_and_velocity():
    rng = np.random.default_rng(4)
    x0, x1 = rng.normal(size=(2, 3, 5, 2)).astype(np.float32)
    t = np.array([0.0, 0.25, 1.0], np.float32)
    s = 0.1
    x_t, u = optimal_transport_path(jnp.asarray(x0), jnp.asarray(x1), jnp.asarray(t), sigma_min=s)
    np.testing.assert_allclose(x_t[0], x0[0], atol=1e-6)
    np.testing.assert_allclose(x_t[2], s * x0[2] + x1[2], atol=1e-6)
    # d x_t / dt by finite differences equals the target velocity
    eps = 1e-2
    x_hi, _ = optimal_transport_path(jnp.asarray(x0), jnp.asarray(x1), jnp.asarray(t * 0 + 0.5 + eps), sigma_min=s)
    x_lo, _ = optimal_transport_path(jnp.asarray(x0), jnp.asarray(x1), jnp.asarray(t * 0 + 0.5 - eps), sigma_min=s)
    np.testing.assert_allclose((x_hi - x_lo) / (2 * eps), u, atol=1e-3)


def test_gradient_flows_through_field_and_jits():
    batch = _batch(np.random.default_rng(5))

    def loss_of(scale):
        return conditional_flow_matching(lambda x, t, c: scale * x, key=jax.random.key(0), **batch)[0]

    grad = jax.jit(jax.grad(loss_of))(1.0)
    assert np.isfinite(float(grad)) and float(grad) != 0.0


def test_any_rank_and_mask_prefix():
    """2-D points with a per-sample mask, and a mel with a frame mask, give the masked mean."""
    x1 = jnp.asarray(np.random.default_rng(7).normal(size=(4, 2)), jnp.float32)
    field = oracle_field(0.0, offset_valid=3.0)

    def points_field(x_t, t, cond):  # the oracle on [B,D]: add then drop a frame axis
        return field(x_t[:, None], t, cond[:, None])[:, 0]

    sample_mask = jnp.array([True, False, True, True])
    loss, _ = conditional_flow_matching(points_field, x1, jax.random.key(0), mask=sample_mask, cond=x1, sigma_min=0.0)
    np.testing.assert_allclose(float(loss), 9.0, rtol=1e-4)
    loss, _ = conditional_flow_matching(points_field, x1, jax.random.key(0), mask=jnp.zeros(4, bool), cond=x1)
    assert float(loss) == 0.0


def test_bad_input():
    batch = _batch(np.random.default_rng(6))
    field = lambda x, t, c: x  # noqa: E731
    with pytest.raises(ValueError, match="sigma_min"):
        conditional_flow_matching(field, key=jax.random.key(0), sigma_min=1.0, **batch)
    with pytest.raises(ValueError, match="t_min"):
        conditional_flow_matching(field, key=jax.random.key(0), t_min=0.5, t_max=0.5, **batch)
    with pytest.raises(ValueError, match="prefix"):
        conditional_flow_matching(field, batch["x1"], jax.random.key(0), mask=batch["mask"][:, :3])
    with pytest.raises(ValueError, match="at least one data axis"):
        conditional_flow_matching(field, batch["x1"][:, 0, 0], jax.random.key(0))
