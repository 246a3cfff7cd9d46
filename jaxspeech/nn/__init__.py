"""Layers: attention dispatch, masks and rotary embedding (attention), Conformer blocks and the depthwise conv
(conformer), RoPE transformer stack (transformer), conv subsampling, timestep embeddings, Matcha 1D U-Net (unet1d),
adaLN-zero DiT (dit), length regulator."""
