"""Least-squares GAN and feature-matching losses (Mao et al. 2017; HiFi-GAN, Kong et al. 2020).

Inputs are lists over discriminators (any nesting of lists/tuples of arrays works: they are
pytrees): scores, each [B, ...] with 1 = real and 0 = generated, and per discriminator its list
of feature maps. Sums over discriminators of per-discriminator means, as HiFi-GAN's code does.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def _sum_of_means(tree: Any, loss) -> jax.Array:
    return sum((jnp.mean(loss(x)) for x in jax.tree.leaves(tree)), jnp.float32(0.0))


def discriminator_loss(real_scores: Any, generated_scores: Any) -> jax.Array:
    """sum_d mean((1 - D_d(real))^2) + mean(D_d(generated)^2)."""
    return _sum_of_means(real_scores, lambda s: (1.0 - s) ** 2) + _sum_of_means(generated_scores, jnp.square)


def generator_adversarial_loss(generated_scores: Any) -> jax.Array:
    """sum_d mean((1 - D_d(generated))^2)."""
    return _sum_of_means(generated_scores, lambda s: (1.0 - s) ** 2)


def feature_matching_loss(real_features: Any, generated_features: Any, *, weight: float = 2.0) -> jax.Array:
    """``weight`` * sum over every discriminator layer of mean |real - generated| (HiFi-GAN: 2).
    The real features carry no gradient (the generator is trained to match them)."""
    pairs = zip(jax.tree.leaves(real_features), jax.tree.leaves(generated_features), strict=True)
    return weight * sum((jnp.mean(jnp.abs(jax.lax.stop_gradient(r) - g)) for r, g in pairs), jnp.float32(0.0))
