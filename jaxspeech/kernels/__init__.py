"""Pallas kernels for the hot paths, each beside its plain-JAX reference.

attention_mask: ``MaskSpec`` (structured speech masks), dense and per-block expansions.
flash_attention: block-sparse flash attention (forward and backward) and ``reference``.
Models do not call kernels directly: ``jaxspeech.nn.attention.attention`` dispatches.
"""
