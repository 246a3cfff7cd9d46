"""Layers, one kind per module: attention dispatch, masks and rotary embedding (attention), pre-LN
feed-forward (feed_forward), rotary self-attention (self_attention), depthwise convolution and the
Conformer conv module (depthwise_conv), Conformer blocks (conformer), RoPE transformer stack
(transformer), causal decoder block with a KV cache (causal_block), conv subsampling, timestep
embeddings, Matcha 1D U-Net (unet1d), adaLN-zero DiT (dit), residual MLP over vectors (mlp_field), per-token
flow-matching head (flow_head), length regulator, call-time dropout.

The modules ``attention`` (entry point ``attention.attention``) and ``dropout`` keep their names here:
their functions of the same name are not re-exported over them."""

from jaxspeech.nn.attention import MaskSpec, rotary_embedding
from jaxspeech.nn.causal_block import CausalBlock, KVCache, init_cache
from jaxspeech.nn.conformer import ConformerBlock, ConformerEncoder
from jaxspeech.nn.depthwise_conv import ConvModule, ConvNeXtBlock, depthwise_conv1d
from jaxspeech.nn.dit import DiT, DiTBlock
from jaxspeech.nn.feed_forward import FeedForward
from jaxspeech.nn.flow_head import FlowHead
from jaxspeech.nn.length_regulator import durations_from_log, length_regulate
from jaxspeech.nn.mlp_field import MLPField
from jaxspeech.nn.self_attention import RotarySelfAttention
from jaxspeech.nn.subsampling import ConvSubsampling
from jaxspeech.nn.timestep import TimestepEmbedding, sinusoidal_embedding
from jaxspeech.nn.transformer import Transformer, TransformerBlock
from jaxspeech.nn.unet1d import UNet1D

__all__ = [
    "CausalBlock", "ConformerBlock", "ConformerEncoder", "ConvModule", "ConvNeXtBlock", "ConvSubsampling", "DiT",
    "DiTBlock", "FeedForward", "FlowHead", "KVCache", "MLPField", "MaskSpec", "RotarySelfAttention",
    "TimestepEmbedding", "Transformer", "TransformerBlock", "UNet1D", "depthwise_conv1d", "durations_from_log",
    "init_cache", "length_regulate", "rotary_embedding", "sinusoidal_embedding",
]
