"""Matcha-TTS 1D U-Net vector field (Mehta et al. 2024, "Matcha-TTS"; decoder after Grad-TTS).

Layout, channels-last [B,T,C] (Matcha's defaults: channels (256, 256), 1 transformer block per
level, 2 mid blocks, GroupNorm 8, Mish):

    down level i:  ResnetBlock1D -> TransformerBlocks -> (skip) -> stride-2 conv, or a
                   plain conv at the last level
    mid:           ResnetBlock1D -> TransformerBlocks, num_mid_blocks times
    up level i:    ResnetBlock1D(concat(x, skip)) -> TransformerBlocks -> transposed conv x2,
                   or a plain conv at the last level
    out:           Block1D -> 1x1 conv to out_features

``len(channels) - 1`` levels halve the time axis, so frames are padded to a multiple of
``2 ** (len(channels) - 1)`` (4 for three levels; Matcha pads to 4 in its data collation) and the
output is cropped back. Every frame-mixing layer reads zeros from padding, GroupNorm statistics
are taken over valid frames only (Matcha's GroupNorm also counts padded frames) and attention
ignores padded keys, so valid outputs do not depend on the padding or the padded length.
Transformer blocks (``block``): "rope", pre-LN RoPE self-attention with a SiLU FFN (heads of
channels / num_heads), or "matcha", Matcha's own (diffusers' BasicTransformerBlock: no positions,
num_heads x head_dim attention, SnakeBeta FFN; ``nn.snake_beta_block``).
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from jaxspeech.nn.snake_beta_block import SnakeBetaTransformerBlock
from jaxspeech.nn.timestep import TimestepEmbedding
from jaxspeech.nn.transformer import TransformerBlock

BLOCKS = ("rope", "matcha")


def masked_group_norm(
    x: jax.Array, mask: jax.Array, num_groups: int, scale: jax.Array, bias: jax.Array, *, epsilon: float = 1e-5
) -> jax.Array:
    """GroupNorm over (valid frames x channels of a group). x: [B,T,C]; mask: [B,T]; scale, bias: [C].

    With an all-true mask this is ``torch.nn.GroupNorm`` (biased variance). Padded frames are
    normalised with the valid frames' statistics (callers mask them afterwards).
    """
    batch, frames, channels = x.shape
    if channels % num_groups:
        raise ValueError(f"channels={channels} not divisible by num_groups={num_groups}")
    grouped = x.astype(jnp.float32).reshape(batch, frames, num_groups, channels // num_groups)
    weight = mask.astype(jnp.float32)[:, :, None, None]
    count = jnp.maximum(jnp.sum(weight, axis=(1, 3), keepdims=True) * grouped.shape[-1], 1.0)
    mean = jnp.sum(grouped * weight, axis=(1, 3), keepdims=True) / count
    var = jnp.sum(jnp.square(grouped - mean) * weight, axis=(1, 3), keepdims=True) / count
    normed = ((grouped - mean) * jax.lax.rsqrt(var + epsilon)).reshape(batch, frames, channels)
    return (normed * scale + bias).astype(x.dtype)


def _masked(x: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.where(mask[..., None], x, 0.0)


class Block1D(nnx.Module):
    """conv(k=3) -> masked GroupNorm -> Mish, on masked input; padded output frames are zero."""

    def __init__(self, dim: int, dim_out: int, groups: int, *, rngs: nnx.Rngs):
        if dim_out % groups:
            raise ValueError(f"channels={dim_out} not divisible by norm_groups={groups}")
        self.groups = groups
        self.conv = nnx.Conv(dim, dim_out, kernel_size=(3,), padding="SAME", rngs=rngs)
        self.norm_scale = nnx.Param(jnp.ones((dim_out,)))
        self.norm_bias = nnx.Param(jnp.zeros((dim_out,)))

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        h = self.conv(_masked(x, mask))
        h = masked_group_norm(h, mask, self.groups, self.norm_scale[...], self.norm_bias[...])
        return _masked(jax.nn.mish(h), mask)


class ResnetBlock1D(nnx.Module):
    """Block1D -> + Linear(Mish(time embedding)) -> Block1D, plus a 1x1-conv residual."""

    def __init__(self, dim: int, dim_out: int, time_dim: int, groups: int, *, rngs: nnx.Rngs):
        self.block1 = Block1D(dim, dim_out, groups, rngs=rngs)
        self.time_proj = nnx.Linear(time_dim, dim_out, rngs=rngs)
        self.block2 = Block1D(dim_out, dim_out, groups, rngs=rngs)
        self.residual = nnx.Linear(dim, dim_out, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array, time_embedding: jax.Array) -> jax.Array:
        h = self.block1(x, mask) + self.time_proj(jax.nn.mish(time_embedding))[:, None, :]
        h = self.block2(h, mask)
        return h + self.residual(_masked(x, mask))


def _transformer_block(block, dim, num_heads, head_dim, ff_mult, dropout, rngs):
    if block == "rope":
        return TransformerBlock(dim, num_heads, ff_mult=ff_mult, dropout=dropout, rngs=rngs)
    return SnakeBetaTransformerBlock(dim, num_heads, head_dim, ff_mult=ff_mult, dropout=dropout, rngs=rngs)


class _Level(nnx.Module):
    """ResnetBlock1D then transformer blocks, at one resolution."""

    def __init__(self, dim, dim_out, time_dim, groups, num_blocks, num_heads, ff_mult, dropout, block, head_dim, *,
                 rngs):
        self.resnet = ResnetBlock1D(dim, dim_out, time_dim, groups, rngs=rngs)
        self.transformers = nnx.List([_transformer_block(block, dim_out, num_heads, head_dim, ff_mult, dropout, rngs)
                                      for _ in range(num_blocks)])

    def __call__(self, x, mask, time_embedding, rngs):
        x = self.resnet(x, mask, time_embedding)
        for block in self.transformers:
            x = _masked(block(x, mask, rngs=rngs), mask)
        return x


class UNet1D(nnx.Module):
    """Matcha U-Net vector field. __call__(x [B,T,in_features], t [B], mask [B,T] bool, *, rngs) -> [B,T,out_features].

    ``x`` is everything the field reads per frame (Matcha: concat of x_t, mu and the speaker
    embedding); t is the flow time in [0, 1] ([B, time_inputs] when it reads several). Output is zero
    at padded frames.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        channels: Sequence[int] = (256, 256),
        time_dim: int = 1024,
        num_blocks: int = 1,
        num_mid_blocks: int = 2,
        num_heads: int = 2,
        ff_mult: int = 4,
        norm_groups: int = 8,
        dropout: float = 0.05,
        block: str = "rope",
        head_dim: int | None = None,
        time_inputs: int = 1,
        rngs: nnx.Rngs,
    ):
        channels = tuple(channels)
        if not channels:
            raise ValueError("channels must name at least one level")
        if block not in BLOCKS:
            raise ValueError(f"unknown U-Net transformer block {block!r}; known: {', '.join(BLOCKS)}")
        if (block == "matcha") != (head_dim is not None):
            raise ValueError("head_dim sets the attention width of the 'matcha' block (Matcha: 64) and only of it; "
                             f"got block={block!r}, head_dim={head_dim}")
        self.num_down = len(channels) - 1
        self.time_embedding = TimestepEmbedding(in_features + in_features % 2, time_dim, inputs=time_inputs, rngs=rngs)
        level = dict(time_dim=time_dim, groups=norm_groups, num_blocks=num_blocks, num_heads=num_heads,
                     ff_mult=ff_mult, dropout=dropout, block=block, head_dim=head_dim, rngs=rngs)
        down, down_convs = [], []
        width = in_features
        for i, out in enumerate(channels):
            down.append(_Level(width, out, **level))
            last = i == len(channels) - 1
            down_convs.append(nnx.Conv(out, out, kernel_size=(3,), strides=(1,) if last else (2,),
                                       padding=((1, 1),), rngs=rngs))
            width = out
        self.down = nnx.List(down)
        self.down_convs = nnx.List(down_convs)
        self.mid = nnx.List([_Level(width, width, **level) for _ in range(num_mid_blocks)])
        up, up_convs = [], []
        widths = channels[::-1] + (channels[0],)
        for i in range(len(channels)):
            out = widths[i + 1]
            up.append(_Level(2 * widths[i], out, **level))
            if i == len(channels) - 1:
                up_convs.append(nnx.Conv(out, out, kernel_size=(3,), padding="SAME", rngs=rngs))
            else:
                # torch ConvTranspose1d(k=4, stride=2, padding=1) doubles T; lax pads the dilated
                # input by k - 1 - padding = 2 on each side for the same output length.
                up_convs.append(
                    nnx.ConvTranspose(out, out, kernel_size=(4,), strides=(2,), padding=((2, 2),), rngs=rngs)
                )
        self.up = nnx.List(up)
        self.up_convs = nnx.List(up_convs)
        self.final_block = Block1D(channels[0], channels[0], norm_groups, rngs=rngs)
        self.final_proj = nnx.Linear(channels[0], out_features, rngs=rngs)

    @property
    def length_multiple(self) -> int:
        """Frames are padded internally to a multiple of this."""
        return 2**self.num_down

    def __call__(self, x: jax.Array, t: jax.Array, mask: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        chex.assert_rank([x, mask], [3, 2])
        chex.assert_equal_shape_prefix([x, mask], 2)
        chex.assert_equal_shape_prefix([x, t], 1)
        frames = x.shape[1]
        pad = -frames % self.length_multiple
        mask = jnp.pad(mask.astype(bool), ((0, 0), (0, pad)))
        x = _masked(jnp.pad(x, ((0, 0), (0, pad), (0, 0))), mask)
        time_embedding = self.time_embedding(t)

        skips, masks = [], [mask]
        for i, (level, conv) in enumerate(zip(self.down, self.down_convs)):
            x = level(x, masks[-1], time_embedding, rngs)
            skips.append(x)
            x = conv(_masked(x, masks[-1]))
            if i < self.num_down:
                masks.append(masks[-1][:, ::2])
        for level in self.mid:
            x = level(x, masks[-1], time_embedding, rngs)
        for level, conv in zip(self.up, self.up_convs):
            level_mask = masks[-1]
            x = level(jnp.concatenate([x, skips.pop()], axis=-1), level_mask, time_embedding, rngs)
            x = conv(_masked(x, level_mask))
            if len(masks) > 1:
                masks.pop()
        x = self.final_block(x, masks[0])
        out = self.final_proj(_masked(x, masks[0]))
        return _masked(out, masks[0])[:, :frames]
