"""Closed forms for data x0 ~ N(0, sd^2) per element and noise ``x_sigma = x0 + sigma (z + m)``: the exact
denoiser, the exact probability-flow jump G(x, t, s), and the consistency function. With y = x - sigma m
the ODE is dy/dsigma = y sigma / (sd^2 + sigma^2), so y scales with sqrt(sd^2 + sigma^2)."""

import jax.numpy as jnp

SD = 0.7  # the data's standard deviation


def expand(v, x):
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


def denoiser(mean=0.0, sd=SD):
    """E[x0 | x_sigma]."""
    return lambda x, sigma, cond=None: sd**2 / (sd**2 + expand(sigma, x) ** 2) * (x - expand(sigma, x) * mean)


def trajectory(mean=0.0, sd=SD):
    """The exact G(x, t, s): where the ODE through x at t is at s."""

    def jump(x, t, s, cond=None):
        t, s = expand(t, x), expand(s, x)
        return (x - t * mean) * jnp.sqrt((sd**2 + s**2) / (sd**2 + t**2)) + s * mean

    return jump


def consistency(mean=0.0, sd=SD, sigma_min=0.002):
    """The exact consistency function f(x, sigma) = G(x, sigma, sigma_min)."""
    jump = trajectory(mean, sd)
    return lambda x, sigma, cond=None: jump(x, sigma, jnp.full_like(sigma, sigma_min), cond)


def two_level_denoiser(mean=0.0, sd=SD):
    """CTM's exact g(x, t, s): G = (s/t) x + (1 - s/t) g solved for g, and the denoiser at s = t."""
    jump, exact = trajectory(mean, sd), denoiser(mean, sd)

    def g(x, t, s, cond=None):
        ratio = expand(s / t, x)
        jumped = (jump(x, t, s) - ratio * x) / jnp.where(ratio < 1, 1 - ratio, 1.0)
        return jnp.where(ratio < 1, jumped, exact(x, t))

    return g
