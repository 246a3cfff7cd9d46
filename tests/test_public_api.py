"""The public API alone, as a notebook or another JAX library would use it: every exported name
resolves, and a 2-D toy distribution is learned with the flow-matching loss and ODE sampler."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxspeech.losses import conditional_flow_matching
from jaxspeech.samplers import sample_ode

PACKAGES = ["audio", "data", "eval", "kernels", "losses", "models.hifigan", "models.tts", "nn", "objectives",
            "samplers", "sparsity", "text", "train", "train.recipes"]
MODES = 2.0 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves(name):
    package = importlib.import_module(f"jaxspeech.{name}")
    for exported in getattr(package, "__all__", []):
        assert getattr(package, exported) is not None, f"jaxspeech.{name}.{exported}"


def _ring(key, n):
    """A mixture of 8 Gaussians (std 0.1) on a circle of radius 2."""
    k_mode, k_noise = jax.random.split(key)
    return jnp.asarray(MODES)[jax.random.randint(k_mode, (n,), 0, 8)] + 0.1 * jax.random.normal(k_noise, (n, 2))


def _init(key, width=128):
    sizes = [(2 + 16, width), (width, width), (width, 2)]
    keys = jax.random.split(key, len(sizes))
    return [(jax.random.normal(k, s) / np.sqrt(s[0]), jnp.zeros(s[1])) for k, s in zip(keys, sizes)]


def _field(params):
    """v(x_t [B,2], t [B], cond) -> [B,2]: an MLP over x and sinusoidal features of t."""

    def v(x, t, cond):
        del cond
        freqs = jnp.arange(8) + 1.0
        h = jnp.concatenate([x, jnp.sin(t[:, None] * freqs), jnp.cos(t[:, None] * freqs)], axis=-1)
        for w, b in params[:-1]:
            h = jax.nn.silu(h @ w + b)
        w, b = params[-1]
        return h @ w + b

    return v


def _nearest_mode_distance(samples):
    distances = np.linalg.norm(np.asarray(samples)[:, None, :] - MODES[None], axis=-1)
    return distances.min(axis=1), distances.argmin(axis=1)


def test_a_2d_toy_is_learned_with_the_flow_matching_loss_and_ode_sampler():
    steps = 4000
    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, steps, 0.05))
    params = _init(jax.random.key(0))
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, key):
        k_data, k_loss = jax.random.split(key)
        loss, grads = jax.value_and_grad(
            lambda p: conditional_flow_matching(_field(p), _ring(k_data, 512), k_loss, sigma_min=0.0)[0])(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    for i in range(steps):
        params, opt_state, _ = step(params, opt_state, jax.random.key(i + 1))
    samples = sample_ode(_field(params), jax.random.key(10_000), (2000, 2), steps=40, method="heun")
    distance, mode = _nearest_mode_distance(samples)
    noise_distance, _ = _nearest_mode_distance(jax.random.normal(jax.random.key(1), (2000, 2)))
    # Data sit a median 0.1 sqrt(2 ln 2) = 0.12 from their mode (Rayleigh); noise ~0.9 away.
    assert np.median(distance) < 0.2 < 0.6 < np.median(noise_distance), (np.median(distance),
                                                                          np.median(noise_distance))
    assert np.bincount(mode, minlength=8).min() > 0.08 * len(mode)  # every mode is covered (1/8 each)
    # One Euler step follows the averaged velocity at t = 0 straight to the ring's middle: the learned
    # field is curved, so the ODE must be integrated.
    one_step, _ = _nearest_mode_distance(sample_ode(_field(params), jax.random.key(10_000), (2000, 2), steps=1))
    assert np.median(one_step) > 3 * np.median(distance)
