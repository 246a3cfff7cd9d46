"""make_train_step: accumulation = full batch, mixed precision, non-finite skipping, sharded jit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

from jaxspeech.train import (
    compile_train_step,
    create_train_state,
    make_mesh,
    make_train_step,
    place_state,
    split_micro_batches,
    train_state_shardings,
)


def linear_loss(params, batch, key):
    """Per-example mean squared error of y = x @ w + b; `noise_probe` records the key."""
    pred = batch["x"] @ params["w"] + params["b"]
    loss = jnp.mean(jnp.square(pred - batch["y"]))
    return loss, {"noise_probe": jax.random.uniform(key), "compute_is_bf16": float(pred.dtype == jnp.bfloat16)}


def make_batch(seed, size=8):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(size, 3)).astype(np.float32)
    return {"x": x, "y": (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype(np.float32)}


def make_state(optimizer):
    params = {"w": jnp.array([[0.1], [0.2], [-0.3]]), "b": jnp.array([0.05])}
    return create_train_state(params, optimizer, jax.random.key(0))


def test_split_micro_batches_is_strided():
    batch = {"x": np.arange(12).reshape(6, 2)}
    micro = split_micro_batches(batch, 3)["x"]
    np.testing.assert_array_equal(micro[1], [[2, 3], [8, 9]])  # rows 1 and 4
    with pytest.raises(ValueError, match="not divisible by accum_steps=4"):
        split_micro_batches(batch, 4)


@pytest.mark.parametrize("accum_steps", [2, 4])
def test_gradient_accumulation_equals_full_batch_gradient(accum_steps):
    # sgd(1): new params = params - grad, so the update exposes the gradient itself.
    state = make_state(optax.sgd(1.0))
    batch, key = make_batch(0), jax.random.key(3)
    full_loss, full_grad = jax.value_and_grad(lambda p: linear_loss(p, batch, key)[0])(state.params)

    step = jax.jit(make_train_step(linear_loss, optax.sgd(1.0), accum_steps=accum_steps))
    new_state, metrics = step(state, batch, key)

    for name in ("w", "b"):
        np.testing.assert_allclose(
            state.params[name] - new_state.params[name], full_grad[name], rtol=1e-5, atol=1e-7
        )
    np.testing.assert_allclose(metrics["loss"], full_loss, rtol=1e-6)
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(full_grad), rtol=1e-5)
    # metrics are averaged over micro-batches, micro-batch i drawing from fold_in(key, i)
    probes = [jax.random.uniform(jax.random.fold_in(key, i)) for i in range(accum_steps)]
    np.testing.assert_allclose(metrics["noise_probe"], np.mean(probes), rtol=1e-6)


def test_bf16_compute_keeps_float32_params_and_is_close_to_float32():
    optimizer = optax.adam(1e-2)
    batch, key = make_batch(1), jax.random.key(0)
    f32_state, f32_metrics = jax.jit(make_train_step(linear_loss, optimizer))(
        make_state(optimizer), batch, key
    )
    bf16_step = jax.jit(make_train_step(linear_loss, optimizer, compute_dtype=jnp.bfloat16))
    bf16_state, bf16_metrics = bf16_step(make_state(optimizer), batch, key)

    assert bf16_metrics["compute_is_bf16"] == 1.0 and f32_metrics["compute_is_bf16"] == 0.0
    assert bf16_metrics["loss"].dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(bf16_state.params))
    assert all(m.dtype == jnp.float32 for m in jax.tree.leaves(bf16_state.opt_state.inner_state[0].mu))
    np.testing.assert_allclose(bf16_metrics["loss"], f32_metrics["loss"], rtol=2e-2)
    np.testing.assert_allclose(bf16_metrics["grad_norm"], f32_metrics["grad_norm"], rtol=3e-2)


def sqrt_loss(params, batch, key):
    """sqrt(|w00 - x|): finite everywhere, gradient +inf where w00 == x."""
    del key
    return jnp.mean(jnp.sqrt(jnp.abs(params["w"][0, 0] - batch["x"][:, 0]))), {}


def nan_targets(state):
    return {**make_batch(2), "y": np.full((8, 1), np.nan, np.float32)}


def x_at_w00(state):
    return {**make_batch(2), "x": np.full((8, 3), state.params["w"][0, 0], np.float32)}


@pytest.mark.parametrize(
    "loss_fn, make_bad_batch", [(linear_loss, nan_targets), (sqrt_loss, x_at_w00)], ids=["nan_loss", "inf_grad"]
)
def test_nonfinite_step_is_skipped_and_streak_counts(loss_fn, make_bad_batch):
    optimizer = optax.adam(1e-2)
    step = jax.jit(make_train_step(loss_fn, optimizer))
    state, _ = step(make_state(optimizer), make_batch(0), jax.random.key(0))
    before = jax.device_get(state)
    bad_batch = make_bad_batch(before)

    for expected_streak in (1, 2):
        state, metrics = step(state, bad_batch, jax.random.key(1))
        assert metrics["skipped"] == 1.0 and metrics["nonfinite_streak"] == expected_streak
        assert not np.isfinite(metrics["grad_norm"])
    after = jax.device_get(state)
    assert int(after.step) == int(before.step) + 2
    kept = (after.params, after.opt_state.inner_state), (before.params, before.opt_state.inner_state)
    for a, b in zip(*map(jax.tree.leaves, kept)):
        np.testing.assert_array_equal(a, b)  # bitwise: NaN-free and unchanged (the streak is counted apart)

    state, metrics = step(state, make_batch(3), jax.random.key(2))
    assert metrics["skipped"] == 0.0 and metrics["nonfinite_streak"] == 0
    assert not np.array_equal(state.params["w"], after.params["w"])


def test_optimizer_state_shardings_follow_params():
    mesh = AbstractMesh((4, 2), ("data", "fsdp"))
    params = {"dense": {"kernel": jnp.zeros((8, 6)), "bias": jnp.zeros((6,))}}
    state = create_train_state(params, optax.adam(1e-3), jax.random.key(0))
    shardings = train_state_shardings(state, mesh, [("kernel", ("data", "fsdp"))])

    assert shardings.params["dense"]["kernel"].spec == P("data", "fsdp")
    adam = shardings.opt_state.inner_state[0]
    assert adam.mu["dense"]["kernel"].spec == P("data", "fsdp")
    assert adam.nu["dense"]["kernel"].spec == P("data", "fsdp")
    assert adam.mu["dense"]["bias"].spec == P()
    assert adam.count.spec == P() and shardings.rng.spec == P() and shardings.step.spec == P()


def test_compiled_step_matches_plain_step_and_donates_state():
    optimizer = optax.adam(1e-2)
    train_step = make_train_step(linear_loss, optimizer, accum_steps=2)
    mesh = make_mesh({"data": -1})
    step_fn, shardings = compile_train_step(train_step, make_state(optimizer), mesh)
    placed = place_state(make_state(optimizer), shardings)
    batch, key = make_batch(4), jax.random.key(5)

    compiled_state, compiled_metrics = step_fn(placed, batch, key)
    plain_state, plain_metrics = jax.jit(train_step)(make_state(optimizer), batch, key)

    assert placed.params["w"].is_deleted()  # donated
    np.testing.assert_allclose(compiled_metrics["loss"], plain_metrics["loss"], rtol=1e-6)
    np.testing.assert_allclose(compiled_state.params["w"], plain_state.params["w"], rtol=1e-6)
    assert jnp.issubdtype(compiled_state.rng.dtype, jax.dtypes.prng_key)


def test_raw_uint32_key_is_wrapped_into_a_typed_key():
    state = create_train_state({"w": jnp.zeros(2)}, optax.sgd(1.0), jax.random.PRNGKey(4))
    assert jnp.issubdtype(state.rng.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(state.rng), jax.random.key_data(jax.random.key(4)))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="accum_steps"):
        make_train_step(linear_loss, optax.sgd(1.0), accum_steps=0)
    with pytest.raises(ValueError, match="float32"):
        create_train_state({"w": jnp.zeros(2, jnp.bfloat16)}, optax.sgd(1.0), jax.random.key(0))
    vector_metric = lambda p, b, k: (linear_loss(p, b, k)[0], {"per_example": b["x"][:, 0]})
    with pytest.raises(ValueError, match="per_example"):
        make_train_step(vector_metric, optax.sgd(1.0))(make_state(optax.sgd(1.0)), make_batch(0), jax.random.key(0))


def test_moving_average_follows_the_params_and_progress_reaches_the_loss():
    seen_steps = []

    def loss_with_progress(params, batch, key, progress):
        # The loss reads the step and the moving average (consistency distillation's target).
        seen_steps.append(progress.step)
        target = progress.ema["w"]
        loss, metrics = linear_loss(params, batch, key)
        return loss, {**metrics, "step_seen": progress.step, "ema_gap": jnp.sum(jnp.square(params["w"] - target))}

    decay = 0.9
    optimizer = optax.sgd(0.1)
    params = {"w": jnp.array([[0.1], [0.2], [-0.3]]), "b": jnp.array([0.05])}
    state = create_train_state(params, optimizer, jax.random.key(0), ema=True)
    np.testing.assert_array_equal(state.ema["w"], params["w"])
    step = jax.jit(make_train_step(loss_with_progress, optimizer, with_progress=True, ema_decay=decay))
    expected_ema = jax.tree.map(np.asarray, state.ema)
    for i in range(3):
        state, metrics = step(state, make_batch(i), jax.random.key(i))
        assert float(metrics["step_seen"]) == i
        expected_ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * np.asarray(p), expected_ema, state.params)
        for name in ("w", "b"):
            np.testing.assert_allclose(state.ema[name], expected_ema[name], rtol=1e-6)
    assert float(metrics["ema_gap"]) > 0  # the average lags the params

    with pytest.raises(ValueError, match="ema_decay go together"):
        jax.jit(make_train_step(linear_loss, optimizer))(state, make_batch(0), jax.random.key(0))
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        make_train_step(linear_loss, optimizer, ema_decay=1.0)


def test_moving_average_is_sharded_like_the_params():
    optimizer = optax.adam(1e-3)
    state = create_train_state({"w": jnp.zeros((8, 4))}, optimizer, jax.random.key(0), ema=True)
    mesh = make_mesh({"data": -1, "fsdp": 1})
    shardings = train_state_shardings(state, mesh, [("w", ("fsdp",))])
    assert shardings.ema["w"] == shardings.params["w"]
