"""HiFi-GAN generator (Kong et al. 2020): log-mel [B, T, n_mels] -> waveform [B, T * hop].

A 7-tap convolution, then per upsampling stage: leaky ReLU (slope 0.1), a transposed
convolution by ``upsample_rates[i]`` (kernel ``upsample_kernel_sizes[i]``, padding
(kernel - rate) / 2) halving the channels, and the multi-receptive-field fusion: the mean of
one residual block per ``resblock_kernel_sizes`` entry. Block "1": per dilation d,
x += conv_1(lrelu(conv_d(lrelu(x)))); block "2": x += conv_d(lrelu(x)). Finally leaky ReLU with
slope 0.01 (the reference code's default, not 0.1), a 7-tap convolution to one channel, tanh.
hop = prod(upsample_rates). Weights are stored without weight norm (folded at import).

Padding: with ``frame_mask`` [B, T] (True for real frames, a prefix per row) every convolution's
input is zeroed past the row's length at its rate, which is exactly the zero padding the row sees
alone; samples past ``valid frames * hop`` are zero. Pure form: ``init(config, key)``,
``apply(graphdef, params, mel, frame_mask)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

LRELU_SLOPE = 0.1
FINAL_LRELU_SLOPE = 0.01
_INIT = nnx.initializers.normal(0.01)  # HiFi-GAN's init_weights for every convolution


@dataclasses.dataclass(frozen=True)
class HifiGanConfig:
    """The generator's hyper-parameters, named as in HiFi-GAN's config.json."""

    num_mels: int = 80
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))

    def __post_init__(self):
        if self.resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {self.resblock!r}")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes must have one entry per stage")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes must have one entry per block")
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes, strict=True):
            if kernel < rate or (kernel - rate) % 2:
                raise ValueError(f"upsample kernel {kernel} must be >= its rate {rate} with an even difference")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ValueError("upsample_initial_channel must halve exactly at every stage")

    @property
    def hop(self) -> int:
        return math.prod(self.upsample_rates)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> HifiGanConfig:
        """From a HiFi-GAN config.json dict (training-only keys are ignored)."""
        names = {field.name for field in dataclasses.fields(cls)}
        fields = {k: v for k, v in config.items() if k in names}
        for key in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes"):
            if key in fields:
                fields[key] = tuple(int(x) for x in fields[key])
        if "resblock_dilation_sizes" in fields:
            dilations = fields["resblock_dilation_sizes"]
            fields["resblock_dilation_sizes"] = tuple(tuple(int(d) for d in ds) for ds in dilations)
        if "resblock" in fields:
            fields["resblock"] = str(fields["resblock"])
        return cls(**fields)


# The published generator configurations (jik876/hifi-gan config_v1/v2/v3.json).
V1 = HifiGanConfig()
V2 = dataclasses.replace(V1, upsample_initial_channel=128)
V3 = HifiGanConfig(
    upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8), upsample_initial_channel=256, resblock="2",
    resblock_kernel_sizes=(3, 5, 7), resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)),
)  # fmt: skip


def _masked(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    return x if mask is None else jnp.where(mask[..., None], x, 0.0)


class Conv(nnx.Module):
    """torch Conv1d on [B, T, C]: ``kernel`` [k, in / groups, out]; padding defaults to "same"
    (dilation * (k - 1) / 2)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, dilation: int = 1,
        groups: int = 1, padding: int | None = None, rngs: nnx.Rngs,
    ):  # fmt: skip
        self.stride, self.dilation, self.groups = stride, dilation, groups
        self.padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        self.kernel = nnx.Param(_INIT(rngs.params(), (kernel_size, in_channels // groups, out_channels)))
        self.bias = nnx.Param(jnp.zeros((out_channels,)))

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """x [B, T, in] -> [B, T', out]; mask [B, T] zeroes the input past each row's length."""
        y = jax.lax.conv_general_dilated(
            _masked(x, mask), self.kernel[...], (self.stride,), [(self.padding, self.padding)],
            rhs_dilation=(self.dilation,), feature_group_count=self.groups, dimension_numbers=("NWC", "WIO", "NWC"),
        )  # fmt: skip
        return y + self.bias[...]


class UpsampleConv(nnx.Module):
    """torch ConvTranspose1d(in, out, k, stride=rate, padding=(k - rate) / 2) on [B, T, C]:
    [B, T, in] -> [B, T * rate, out]. ``kernel`` is stored [k, in, out] (torch: [in, out, k])."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, rate: int, *, rngs: nnx.Rngs):
        self.rate = rate
        self.padding = (kernel_size - rate) // 2
        self.kernel = nnx.Param(_INIT(rngs.params(), (kernel_size, in_channels, out_channels)))
        self.bias = nnx.Param(jnp.zeros((out_channels,)))

    def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
        kernel = self.kernel[...]
        edge = kernel.shape[0] - 1 - self.padding  # a transposed convolution: dilate the input, flip the taps
        y = jax.lax.conv_general_dilated(
            _masked(x, mask), kernel[::-1], (1,), [(edge, edge)], lhs_dilation=(self.rate,),
            dimension_numbers=("NWC", "WIO", "NWC"),
        )  # fmt: skip
        return y + self.bias[...]


class ResBlock(nnx.Module):
    """One multi-receptive-field branch: kernel ``kernel_size``, one unit per dilation. Block "1"
    holds ``convs1`` (dilated) and ``convs2`` (undilated), block "2" ``convs``, as in HiFi-GAN."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int], kind: str, *, rngs: nnx.Rngs):
        self.kind = kind
        dilated = nnx.List([Conv(channels, channels, kernel_size, dilation=d, rngs=rngs) for d in dilations])
        if kind == "1":
            self.convs1 = dilated
            self.convs2 = nnx.List([Conv(channels, channels, kernel_size, rngs=rngs) for _ in dilations])
        else:
            self.convs = dilated

    def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
        for i, conv in enumerate(self.convs1 if self.kind == "1" else self.convs):
            h = conv(jax.nn.leaky_relu(x, LRELU_SLOPE), mask)
            if self.kind == "1":
                h = self.convs2[i](jax.nn.leaky_relu(h, LRELU_SLOPE), mask)
            x = x + h
        return x


class HifiGanGenerator(nnx.Module):
    def __init__(self, config: HifiGanConfig, *, rngs: nnx.Rngs):
        self.config = config
        channels = config.upsample_initial_channel
        self.conv_pre = Conv(config.num_mels, channels, 7, rngs=rngs)
        self.ups, self.resblocks = nnx.List(), nnx.List()
        for rate, kernel in zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True):
            self.ups.append(UpsampleConv(channels, channels // 2, kernel, rate, rngs=rngs))
            channels //= 2
            for size, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=True):
                self.resblocks.append(ResBlock(channels, size, dilations, config.resblock, rngs=rngs))
        self.conv_post = Conv(channels, 1, 7, rngs=rngs)

    def __call__(self, mel: jax.Array, frame_mask: jax.Array | None = None) -> jax.Array:
        """mel [B, T, n_mels] -> waveform [B, T * hop] in [-1, 1]."""
        branches = len(self.config.resblock_kernel_sizes)
        mask = frame_mask
        x = self.conv_pre(mel, mask)
        for i, (up, rate) in enumerate(zip(self.ups, self.config.upsample_rates, strict=True)):
            x = up(jax.nn.leaky_relu(x, LRELU_SLOPE), mask)
            mask = None if mask is None else jnp.repeat(mask, rate, axis=1)
            x = sum(self.resblocks[i * branches + j](x, mask) for j in range(branches)) / branches
        x = self.conv_post(jax.nn.leaky_relu(x, FINAL_LRELU_SLOPE), mask)
        return _masked(jnp.tanh(x), mask)[..., 0]


def init(config: HifiGanConfig, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """A randomly initialised generator split into (graphdef, params)."""
    return nnx.split(HifiGanGenerator(config, rngs=nnx.Rngs(params=key)), nnx.Param)


def apply(
    graphdef: nnx.GraphDef, params: nnx.State, mel: jax.Array, frame_mask: jax.Array | None = None
) -> jax.Array:
    """Pure forward: mel [B, T, n_mels] (natural-log mel, HiFi-GAN's convention), frame_mask [B, T]
    bool or None -> waveform [B, T * hop] float32."""
    model = nnx.merge(graphdef, params)
    chex.assert_rank(mel, 3)
    if mel.shape[-1] != model.config.num_mels:
        raise ValueError(f"mel must be [B, T, {model.config.num_mels}], got {mel.shape}")
    if frame_mask is not None:
        chex.assert_shape(frame_mask, mel.shape[:2])
    return model(mel, frame_mask)
