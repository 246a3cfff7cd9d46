"""Built-in vocoders for the acoustic model's output, by name (``config.synth.vocoder``).

A vocoder is ``vocode(out: Synthesis, key) -> waveforms [B, T * hop]``; ``out.mel`` is padded with
silence past ``out.mel_mask``. Griffin-Lim renders the model's mel alone (so it measures what the
acoustic model itself carries); harmonic-plus-noise renders the pitch predictor's F0 and voicing
under the mel's envelope (``jaxspeech.audio.harmonic``). A vocoder that reads ``out.f0`` and
``out.voiced`` says so with a true ``reads_pitch`` attribute (:func:`vocoder_reads_pitch`): for the
others the synthesizer skips the pitch predictor. A trained vocoder (a workdir) is resolved by the
recipe that owns it, outside this module.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import ml_collections

from jaxspeech import audio
from jaxspeech.audio.harmonic import log_mel_f0_to_audio
from jaxspeech.models.tts.synthesis import Synthesis

Vocoder = Callable[[Synthesis, jax.Array], jax.Array]
GRIFFIN_LIM = "griffin-lim"
HARMONIC = "harmonic"
BUILTIN_VOCODERS = (GRIFFIN_LIM, HARMONIC)


def griffin_lim_vocoder(preset: str, iterations: int) -> Vocoder:
    return lambda out, key: audio.log_mel_to_audio(out.mel, preset, n_iter=iterations)


def harmonic_vocoder(preset: str, harmonic: ml_collections.ConfigDict) -> Vocoder:
    """Harmonic-plus-noise at the predicted F0 with ``synth.harmonic``'s settings: voiced_noise,
    griffin_lim_iterations, below_hz, refine_unvoiced (see ``log_mel_f0_to_audio``)."""

    def vocode(out: Synthesis, key: jax.Array) -> jax.Array:
        return log_mel_f0_to_audio(out.mel, out.f0, out.voiced, key, preset, voiced_noise=harmonic.voiced_noise,
                                   griffin_lim_iterations=harmonic.griffin_lim_iterations,
                                   harmonic_below_hz=harmonic.below_hz, refine_unvoiced=harmonic.refine_unvoiced)

    vocode.reads_pitch = True
    return vocode


def vocoder_reads_pitch(vocoder: Vocoder) -> bool:
    """Whether ``vocoder`` renders the pitch predictor's F0 and voicing (its ``reads_pitch`` attribute)."""
    return bool(getattr(vocoder, "reads_pitch", False))


def builtin_vocoder(name: str, config: ml_collections.ConfigDict) -> Vocoder:
    """The built-in vocoder ``name`` with a run config's ``synth`` settings for its mel preset."""
    preset = config.data.preset
    if name == GRIFFIN_LIM:
        return griffin_lim_vocoder(preset, config.synth.griffin_lim.iterations)
    if name == HARMONIC:
        if not config.model.pitch.enabled:
            raise ValueError("the harmonic vocoder needs the model's F0: train with model.pitch.enabled=True, "
                             f"or use the {GRIFFIN_LIM} vocoder")
        return harmonic_vocoder(preset, config.synth.harmonic)
    raise ValueError(f"unknown vocoder {name!r}; known: {', '.join(BUILTIN_VOCODERS)}")
