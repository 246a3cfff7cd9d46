"""The acoustic model's config: Matcha-TTS sizes, ProsodyFM's intonation encoder, a decoder network
and the generative objective it is trained with."""

from __future__ import annotations

import ml_collections

from jaxspeech import objectives


def default_config(objective: str = "flow_matching") -> ml_collections.ConfigDict:
    """Matcha-TTS sizes (encoder 192 x 6 layers, U-Net channels (256, 256)) and ProsodyFM's
    intonation encoder (6 tokens, LSTM 128, 8 heads x 384 units); the decoder network trained with
    ``objective`` (its hyperparameters under ``decoder.<objective>``). Mel statistics: Matcha's
    LJSpeech values, to be replaced by the corpus's (the recipe measures them)."""
    return ml_collections.ConfigDict(
        dict(
            n_mels=80,
            vocab_size=64,
            num_speakers=1,
            break_token=1,
            mel_mean=-5.536622,
            mel_std=2.116101,
            # architecture: "pre_ln" or "matcha" (Matcha-TTS's own encoder, see encoder.py)
            encoder=dict(d_model=192, num_layers=6, num_heads=2, ff_mult=4, prenet_layers=3, prenet_kernel=5,
                         dropout=0.1, architecture="pre_ln"),
            duration_predictor=dict(channels=256, kernel=3, dropout=0.1),
            # reconstruction_weight > 0 adds a head decoding the contour back from the style vector;
            # num_tokens = 0: no intonation tokens (plain Matcha-TTS).
            intonation=dict(num_tokens=6, contour_points=32, lstm_hidden=128, attention_dim=384, num_heads=8,
                            reconstruction_weight=0.0),
            # log_f0_mean/std normalise the target (ln 150 Hz, a quarter octave-ish spread): fixed, not measured.
            # condition_decoder: the decoder network also reads the frame pitch: the recording's in training
            # (teacher forcing), the predictor's in synthesis (FastSpeech 2); as decoder_input "log_f0" (normalised
            # log-F0, voicing) or "harmonic_comb" (where the harmonics fall on mel_preset's filters, voicing;
            # mel_preset is set from data.preset by the recipe).
            pitch=dict(enabled=False, channels=256, layers=3, kernel=5, dropout=0.1, log_f0_mean=5.0,
                       log_f0_std=0.4, condition_decoder=False, decoder_input="log_f0", mel_preset="tts_22k"),
            decoder=dict(
                network="unet",
                objective=objective,
                **{objective: objectives.get(objective).default_config()},
                speaker_dim=64,  # 0: no speaker embedding (a single-speaker Matcha-TTS)
                cond_drop_prob=0.1,  # CFG: share of training rows with the null speaker and zero mu_y
                noise_around_mu=False,  # centre the objective's noise on mu_y (CoMoSpeech, Grad-TTS)
                segment_frames=ml_collections.config_dict.placeholder(int),  # Matcha out_size
                # block: "rope" or "matcha" (Matcha's own, attention num_heads x head_dim; see nn/unet1d.py)
                unet=dict(channels=(256, 256), time_dim=1024, num_blocks=1, num_mid_blocks=2, num_heads=2,
                          ff_mult=4, norm_groups=8, dropout=0.05, block="rope",
                          head_dim=ml_collections.config_dict.placeholder(int)),
                dit=dict(d_model=256, num_layers=6, num_heads=4, ff_mult=4, dropout=0.1),
            ),
        )
    )


def with_objective(config: ml_collections.ConfigDict, objective: str) -> ml_collections.ConfigDict:
    """A copy of the acoustic model's ``config`` whose decoder is trained with ``objective`` (its default
    hyperparameters under ``decoder.<objective>``, the previous objective's section dropped)."""
    config = ml_collections.ConfigDict(config.to_dict())
    previous = config.decoder.objective
    decoder = config.decoder.to_dict()
    decoder.pop(previous, None)
    decoder.update(objective=objective, **{objective: objectives.get(objective).default_config()})
    config.decoder = ml_collections.ConfigDict(decoder)
    return config


# Fields whose default is not what runs saved before the field existed did: their value for those runs.
_BEFORE_THE_FIELD = {"ctm": {"adaptive_weight": False}}


def upgrade_saved(saved: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A saved run's acoustic-model config with every field added since it was written, at the value that
    keeps the run's behaviour: the field's default (``decoder.ctm.adaptive_weight``: False)."""
    objective = saved.decoder.objective
    defaults = default_config(objective).to_dict()
    defaults["decoder"][objective].update(_BEFORE_THE_FIELD.get(objective, {}))
    return ml_collections.ConfigDict(_with_missing(saved.to_dict(), defaults))


def _with_missing(saved: dict, defaults: dict) -> dict:
    """``saved`` plus the keys of ``defaults`` it lacks, recursively."""
    merged = dict(saved)
    for key, value in defaults.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = _with_missing(merged[key], value)
    return merged
