"""The decoder *network*: ``net(x [B,T,F], time [B] (CTM: [B,2]), cond) -> [B,T,F]`` over the frame-level text
means, the speaker and (optionally) the frame pitch. What the output means (a velocity, a denoised
mel, ...) is the objective's business (``jaxspeech.objectives``), not the network's.

cond: ``{"mu": [B,T,F] frame-level text means, "speaker": [B] int (num_speakers = the null speaker
of classifier-free guidance), "mask": [B,T] bool}``, plus ``"pitch": [B,T,C]`` (``prosody.pitch_condition``)
when ``pitch.condition_decoder``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jaxspeech import objectives
from jaxspeech.models.tts.prosody import pitch_channels
from jaxspeech.nn.dit import DiT
from jaxspeech.nn.unet1d import UNet1D

NETWORKS = ("unet", "dit")


def reads_pitch(config: ml_collections.ConfigDict) -> bool:
    """Does the decoder network read the frame pitch (``pitch.enabled`` and ``pitch.condition_decoder``)?"""
    return config.pitch.enabled and config.pitch.condition_decoder


class DecoderNetwork(nnx.Module):
    """A Matcha 1D U-Net over concat(x, mu[, pitch], speaker embedding), or an adaLN-zero DiT over
    concat(x, mu[, pitch]) with the speaker embedding in its adaLN condition (``decoder.network``).
    The U-Net may read no speaker embedding (``speaker_dim`` = 0, a single-speaker Matcha-TTS)."""

    def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
        dec, n_mels = config.decoder, config.n_mels
        if dec.network not in NETWORKS:
            raise ValueError(f"unknown decoder network {dec.network!r}; known: {', '.join(NETWORKS)}")
        self.network = dec.network
        self.reads_pitch = reads_pitch(config)
        d_in = 2 * n_mels + (pitch_channels(config.pitch) if self.reads_pitch else 0)
        if dec.speaker_dim < (1 if dec.network == "dit" else 0):
            raise ValueError(f"decoder.speaker_dim must be >= {1 if dec.network == 'dit' else 0} for the "
                             f"{dec.network} network, got {dec.speaker_dim}")
        self.speaker = nnx.Embed(config.num_speakers + 1, dec.speaker_dim, rngs=rngs) if dec.speaker_dim else None
        time_inputs = objectives.get(dec.objective).time_inputs  # CTM reads two noise levels
        if dec.network == "unet":
            self.net = UNet1D(d_in + dec.speaker_dim, n_mels, time_inputs=time_inputs, rngs=rngs, **dict(dec.unet))
        else:
            self.net = DiT(d_in, n_mels, dec.speaker_dim, time_inputs=time_inputs, rngs=rngs, **dict(dec.dit))

    def __call__(self, x: jax.Array, time: jax.Array, cond, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        if self.reads_pitch != ("pitch" in cond):
            raise ValueError("the decoder was built with pitch.condition_decoder="
                             f"{self.reads_pitch}: cond['pitch'] [B,T,C] must be "
                             f"{'given' if self.reads_pitch else 'absent'}")
        spk = None if self.speaker is None else self.speaker(cond["speaker"])
        pitch = [cond["pitch"].astype(x.dtype)] if self.reads_pitch else []
        h = jnp.concatenate([x, cond["mu"]] + pitch, axis=-1)
        if self.network == "unet":
            if spk is not None:
                h = jnp.concatenate([h, jnp.broadcast_to(spk[:, None, :], (*h.shape[:2], spk.shape[-1]))], axis=-1)
            return self.net(h, time, cond["mask"], rngs=rngs)
        return self.net(h, time, spk, cond["mask"], rngs=rngs)


def null_condition(config: ml_collections.ConfigDict, mask: jax.Array) -> dict[str, jax.Array]:
    """The CFG null condition for ``mask`` [B,T]: every condition leaf but the mask zeroed (mu_y,
    and the pitch when the network reads it) and the null speaker; leaves broadcast to the cond's."""
    null = {"mu": jnp.zeros((1, 1, config.n_mels)), "speaker": jnp.full((1,), config.num_speakers, jnp.int32),
            "mask": mask}
    if reads_pitch(config):
        null["pitch"] = jnp.zeros((1, 1, pitch_channels(config.pitch)))
    return null
