"""Layers: attention dispatch and rotary embedding (attention), Conformer blocks, conv subsampling."""
