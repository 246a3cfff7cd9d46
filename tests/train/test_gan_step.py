"""The adversarial step: discriminator first, then the generator against the updated
discriminator, checked against the same two SGD updates written out by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxspeech.losses import gan
from jaxspeech.train import (
    GanState,
    compile_gan_train_step,
    create_train_state,
    make_gan_train_step,
    make_mesh,
    place_state,
)

RATE = 0.1


def generate(g, batch):  # a linear "generator" of [B, 3] samples from noise [B, 2]
    return batch["noise"] @ g


def d_loss(d, g, batch, key):
    real, fake = batch["real"] @ d, jax.lax.stop_gradient(generate(g, batch)) @ d
    return gan.discriminator_loss([real], [fake]), {}


def g_loss(g, d, batch, key):
    return gan.generator_adversarial_loss([generate(g, batch) @ d]), {}


def start(g, d):
    key = jax.random.key(0)
    return GanState(generator=create_train_state(g, optax.sgd(RATE), key),
                    discriminator=create_train_state(d, optax.sgd(RATE), key))  # fmt: skip


def test_the_generator_steps_against_the_updated_discriminator():
    rng = np.random.default_rng(0)
    g0, d0 = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((2, 3), (3,)))
    batch = {"real": jnp.asarray(rng.standard_normal((8, 3)), jnp.float32),
             "noise": jnp.asarray(rng.standard_normal((8, 2)), jnp.float32)}  # fmt: skip
    step = jax.jit(make_gan_train_step(g_loss, d_loss, optax.sgd(RATE), optax.sgd(RATE)))
    state, metrics = step(start(g0, d0), batch, jax.random.key(1))

    key = jax.random.key(1)
    d1 = d0 - RATE * jax.grad(lambda d: d_loss(d, g0, batch, key)[0])(d0)
    g1 = g0 - RATE * jax.grad(lambda g: g_loss(g, d1, batch, key)[0])(g0)
    np.testing.assert_allclose(state.discriminator.params, d1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.generator.params, g1, rtol=1e-5, atol=1e-6)
    simultaneous = g0 - RATE * jax.grad(lambda g: g_loss(g, d0, batch, key)[0])(g0)
    assert np.abs(np.asarray(simultaneous - g1)).max() > 1e-3  # the order is visible
    np.testing.assert_allclose(metrics["discriminator/loss"], d_loss(d0, g0, batch, key)[0], rtol=1e-5)
    np.testing.assert_allclose(metrics["generator/loss"], g_loss(g0, d1, batch, key)[0], rtol=1e-5)
    assert int(state.generator.step) == int(state.discriminator.step) == 1


def test_a_nonfinite_discriminator_step_is_skipped_alone():
    rng = np.random.default_rng(1)
    g0, d0 = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((2, 3), (3,)))
    batch = {"real": jnp.full((4, 3), jnp.nan, jnp.float32),  # only the discriminator reads real data
             "noise": jnp.asarray(rng.standard_normal((4, 2)), jnp.float32)}  # fmt: skip
    step = jax.jit(make_gan_train_step(g_loss, d_loss, optax.sgd(RATE), optax.sgd(RATE)))
    state, metrics = step(start(g0, d0), batch, jax.random.key(2))
    np.testing.assert_array_equal(state.discriminator.params, d0)
    assert float(metrics["discriminator/skipped"]) == 1.0 and float(metrics["generator/skipped"]) == 0.0
    assert not np.allclose(state.generator.params, g0)


def test_the_sharded_step_equals_the_plain_one():
    rng = np.random.default_rng(2)
    g0, d0 = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((2, 3), (3,)))
    rows = 2 * jax.device_count()
    batch = {"real": jnp.asarray(rng.standard_normal((rows, 3)), jnp.float32),
             "noise": jnp.asarray(rng.standard_normal((rows, 2)), jnp.float32)}  # fmt: skip
    train_step = make_gan_train_step(g_loss, d_loss, optax.sgd(RATE), optax.sgd(RATE))
    want, _ = jax.jit(train_step)(start(g0, d0), batch, jax.random.key(3))
    step_fn, shardings = compile_gan_train_step(train_step, start(g0, d0), make_mesh({"data": -1}))
    got, metrics = step_fn(place_state(start(g0, d0), shardings), batch, jax.random.key(3))
    for a, b in zip(jax.tree.leaves((got.generator.params, got.discriminator.params)),
                    jax.tree.leaves((want.generator.params, want.discriminator.params))):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert set(metrics) >= {"generator/loss", "discriminator/loss", "generator/grad_norm"}
