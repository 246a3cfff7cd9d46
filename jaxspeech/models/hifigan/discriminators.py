"""HiFi-GAN's discriminators on waveforms [B, T]: multi-period (MPD) and multi-scale (MSD).

Each discriminator returns (scores [B, N], feature maps): the per-patch realness scores of its
last convolution, and the output of every layer (leaky ReLU 0.1 after all but the last), for
the least-squares and feature-matching losses of ``jaxspeech.losses.gan``.

Period p: the waveform, reflect-padded at the end to a multiple of p, is read as p interleaved
sequences (sample t belongs to column t mod p); HiFi-GAN's (k, 1) Conv2d kernels never mix
columns, so the columns go through 1-D convolutions side by side (folded into the batch) and the
feature maps are [B * p, T', C] rather than torch's [B, C, T', p] (the same numbers). Scale:
1-D grouped convolutions on the waveform, the second and third scales on the waveform average-
pooled by 2 and 4 (window 4, stride 2, padding 2, zeros counted as torch's AvgPool1d does).

``channel_divisor`` narrows every hidden layer (channels // divisor, groups reduced to a common
divisor of both widths) for small CPU-sized discriminators; 1 is the published size.

Weights are plain: the published training reparametrises them with weight norm (and spectral
norm in the first scale discriminator); ``discriminator_params_from_state_dict`` folds both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.models.hifigan.model import LRELU_SLOPE, Conv

PERIODS = (2, 3, 5, 7, 11)
SCALES = 3
# (in, out, kernel, stride, groups, padding) per layer, then the 1-channel output layer.
_PERIOD_LAYERS = ((1, 32, 5, 3, 1, 2), (32, 128, 5, 3, 1, 2), (128, 512, 5, 3, 1, 2), (512, 1024, 5, 3, 1, 2),
                  (1024, 1024, 5, 1, 1, 2), (1024, 1, 3, 1, 1, 1))  # fmt: skip
_SCALE_LAYERS = ((1, 128, 15, 1, 1, 7), (128, 128, 41, 2, 4, 20), (128, 256, 41, 2, 16, 20), (256, 512, 41, 4, 16, 20),
                 (512, 1024, 41, 4, 16, 20), (1024, 1024, 41, 1, 16, 20), (1024, 1024, 5, 1, 1, 2),
                 (1024, 1, 3, 1, 1, 1))  # fmt: skip

Output = tuple[jax.Array, list[jax.Array]]


def _narrowed(layer: tuple[int, ...], divisor: int) -> tuple[int, ...]:
    """A layer's (in, out, kernel, stride, groups, padding) with hidden widths divided by ``divisor``
    (the 1-channel input and output stay)."""
    in_channels, out_channels, kernel, stride, groups, padding = layer
    in_channels, out_channels = (c if c == 1 else max(c // divisor, 1) for c in (in_channels, out_channels))
    return in_channels, out_channels, kernel, stride, math.gcd(groups, in_channels, out_channels), padding


class _Stack(nnx.Module):
    """Convolutions ``convs`` with leaky ReLU after each, then ``conv_post``; [N, T, 1] -> Output."""

    def __init__(self, layers: Sequence[tuple[int, ...]], channel_divisor: int, *, rngs: nnx.Rngs):
        if channel_divisor < 1:
            raise ValueError(f"channel_divisor must be >= 1, got {channel_divisor}")
        make = lambda i, o, k, s, g, p: Conv(i, o, k, stride=s, groups=g, padding=p, rngs=rngs)  # noqa: E731
        layers = [_narrowed(layer, channel_divisor) for layer in layers]
        self.convs = nnx.List([make(*layer) for layer in layers[:-1]])
        self.conv_post = make(*layers[-1])

    def __call__(self, x: jax.Array) -> Output:
        features = []
        for conv in self.convs:
            x = jax.nn.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        x = self.conv_post(x)
        features.append(x)
        return x.reshape(x.shape[0], -1), features


class PeriodDiscriminator(_Stack):
    def __init__(self, period: int, *, channel_divisor: int = 1, rngs: nnx.Rngs):
        super().__init__(_PERIOD_LAYERS, channel_divisor, rngs=rngs)
        self.period = period

    def __call__(self, wave: jax.Array) -> Output:
        """wave [B, T] -> (scores [B, p * T'], feature maps [B * p, T_l, C_l])."""
        batch, length = wave.shape
        pad = -length % self.period
        if pad:
            wave = jnp.pad(wave, ((0, 0), (0, pad)), mode="reflect")
        columns = jnp.swapaxes(wave.reshape(batch, -1, self.period), 1, 2)  # [B, p, T/p]
        scores, features = super().__call__(columns.reshape(batch * self.period, -1, 1))
        # torch flattens [B, 1, T', p] row-major: time-major, period-minor.
        scores = jnp.swapaxes(scores.reshape(batch, self.period, -1), 1, 2).reshape(batch, -1)
        return scores, features


def _average_pool(wave: jax.Array) -> jax.Array:
    """torch AvgPool1d(4, 2, padding=2) on [B, T]: zero padding counted in the average."""
    summed = jax.lax.reduce_window(jnp.pad(wave, ((0, 0), (2, 2))), 0.0, jax.lax.add, (1, 4), (1, 2), "VALID")
    return summed / 4.0


class ScaleDiscriminator(_Stack):
    def __init__(self, *, channel_divisor: int = 1, rngs: nnx.Rngs):
        super().__init__(_SCALE_LAYERS, channel_divisor, rngs=rngs)

    def __call__(self, wave: jax.Array) -> Output:
        """wave [B, T] -> (scores [B, T'], feature maps [B, T_l, C_l])."""
        return super().__call__(wave[..., None])


class MultiPeriodDiscriminator(nnx.Module):
    def __init__(self, periods: Sequence[int] = PERIODS, *, channel_divisor: int = 1, rngs: nnx.Rngs):
        self.discriminators = nnx.List([PeriodDiscriminator(p, channel_divisor=channel_divisor, rngs=rngs)
                                        for p in periods])

    def __call__(self, wave: jax.Array) -> list[Output]:
        return [d(wave) for d in self.discriminators]


class MultiScaleDiscriminator(nnx.Module):
    def __init__(self, scales: int = SCALES, *, channel_divisor: int = 1, rngs: nnx.Rngs):
        self.discriminators = nnx.List([ScaleDiscriminator(channel_divisor=channel_divisor, rngs=rngs)
                                        for _ in range(scales)])

    def __call__(self, wave: jax.Array) -> list[Output]:
        outputs = []
        for i, d in enumerate(self.discriminators):
            if i:
                wave = _average_pool(wave)
            outputs.append(d(wave))
        return outputs
