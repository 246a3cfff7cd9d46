"""HiFi-GAN generator: model (``init`` / ``apply``, published V1-V3 configs) and PyTorch checkpoint import."""

from jaxspeech.models.checkpoint_import import CheckpointError
from jaxspeech.models.hifigan.convert import import_hifigan_checkpoint, params_from_state_dict
from jaxspeech.models.hifigan.model import V1, V2, V3, HifiGanConfig, HifiGanGenerator, apply, init

__all__ = [
    "V1", "V2", "V3", "CheckpointError", "HifiGanConfig", "HifiGanGenerator", "apply", "import_hifigan_checkpoint",
    "init", "params_from_state_dict",
]  # fmt: skip
