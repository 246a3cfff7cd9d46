"""Pallas kernels for the hot paths, each beside its plain-JAX reference.

attention_mask: ``MaskSpec`` (structured speech masks), dense and per-block expansions.
flash_attention: block-sparse flash attention (forward and backward) and ``reference``.
Models do not call kernels directly: ``jaxspeech.nn.attention.attention`` dispatches.
"""

# Submodules keep their names (``kernels.flash_attention``, ``kernels.monotonic_alignment``); the
# names below do not shadow them.
from jaxspeech.kernels.attention_mask import MaskSpec, dense_mask
from jaxspeech.kernels.monotonic_alignment import durations_from_path, gaussian_log_likelihood

__all__ = ["MaskSpec", "dense_mask", "durations_from_path", "gaussian_log_likelihood"]
