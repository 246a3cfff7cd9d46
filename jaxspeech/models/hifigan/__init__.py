"""HiFi-GAN: generator (``init`` / ``apply``, published V1-V3 configs), multi-period and multi-scale
discriminators, and PyTorch checkpoint import."""

from jaxspeech.models.checkpoint_import import CheckpointError
from jaxspeech.models.hifigan.convert import (
    discriminator_params_from_state_dict,
    import_hifigan_checkpoint,
    params_from_state_dict,
)
from jaxspeech.models.hifigan.discriminators import (
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    PeriodDiscriminator,
    ScaleDiscriminator,
)
from jaxspeech.models.hifigan.model import V1, V2, V3, HifiGanConfig, HifiGanGenerator, apply, init

__all__ = [
    "V1", "V2", "V3", "CheckpointError", "HifiGanConfig", "HifiGanGenerator", "MultiPeriodDiscriminator",
    "MultiScaleDiscriminator", "PeriodDiscriminator", "ScaleDiscriminator", "apply",
    "discriminator_params_from_state_dict", "import_hifigan_checkpoint", "init", "params_from_state_dict",
]  # fmt: skip
