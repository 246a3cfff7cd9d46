"""Objectives: the registry, flow matching as an objective, and a new objective plugged into the TTS
model with no edit to the model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech import objectives
from jaxspeech.losses import conditional_flow_matching
from jaxspeech.models import tts
from jaxspeech.samplers import sample_ode

from tests.models.test_tts import tiny_batch, tiny_config


def test_unknown_objectives_and_sampler_options_name_the_known_ones():
    with pytest.raises(ValueError, match="unknown objective 'score_sde'; known: cd, ctm, ect, edm, flow_matching, ict"):
        objectives.get("score_sde")
    flow = objectives.get("flow_matching")
    with pytest.raises(ValueError, match=r"takes \['method', 'steps', 'sway', 'temperature'\], not \['sigmas'\]"):
        objectives.check_sampler_options(flow, {"steps": 2, "sigmas": (80.0, 0.5)})
    with pytest.raises(ValueError, match="already registered"):
        objectives.register(flow._replace(loss=lambda *a, **k: None))


def test_flow_matching_objective_is_the_loss_and_sampler_over_the_network():
    flow = objectives.get("flow_matching")
    x1 = jax.random.normal(jax.random.key(0), (3, 5, 2))
    mask = jnp.arange(5)[None] < jnp.array([[5], [3], [1]])

    def network(x, t, cond):
        return cond * x + t[:, None, None]

    config = flow.default_config()
    config = type("Config", (), config)  # attribute access, as a ConfigDict gives
    got = flow.loss(network, x1, jax.random.key(1), mask=mask, cond=0.5, config=config)
    want = conditional_flow_matching(network, x1, jax.random.key(1), mask=mask, cond=0.5, sigma_min=1e-4)
    np.testing.assert_allclose(got[0], want[0])
    options = {**flow.sampler_defaults(), "steps": 4, "method": "heun"}
    sampled = flow.sample(network, jax.random.key(2), (3, 5, 2), cond=0.5, config=config, **options)
    direct = sample_ode(network, jax.random.key(2), (3, 5, 2), cond=0.5, steps=4, method="heun",
                        temperature=options["temperature"])
    np.testing.assert_allclose(sampled, direct)
    assert flow.evaluations(**options) == 8


def _x0_loss(network, x1, key, *, mask, cond, config, noise_mean=None, context=None):
    """A denoiser trained to predict x1 from x1 + sigma * noise (sigma fixed): a stand-in for EDM."""
    noisy = x1 + config.sigma * jax.random.normal(key, x1.shape)
    error = jnp.where(mask[..., None], jnp.square(network(noisy, jnp.full(x1.shape[:1], config.sigma), cond) - x1), 0.0)
    loss = jnp.sum(error) / jnp.maximum(jnp.sum(mask) * x1.shape[-1], 1)
    return loss, {"x0_mse": loss}


def _x0_sample(network, key, shape, *, cond, config, uncond=None, guidance_scale=None, noise_mean=None, sigma):
    return network(sigma * jax.random.normal(key, shape), jnp.full(shape[:1], sigma), cond)


X0 = objectives.Objective("test_x0", lambda: {"sigma": 1.0}, lambda: {"sigma": 1.0}, _x0_loss, _x0_sample,
                          lambda **_: 1)


def test_a_new_objective_trains_and_samples_the_tts_decoder_without_editing_the_model():
    objectives.register(X0)
    config = tiny_config()
    config.decoder.objective = "test_x0"
    with pytest.raises(ValueError, match="no 'test_x0' section"):
        tts.init(config, jax.random.key(0))
    config = tts.default_config(objective="test_x0")
    reference = tiny_config()
    for name in ("n_mels", "vocab_size", "num_speakers", "break_token", "mel_mean", "mel_std"):
        config[name] = reference[name]
    for name in ("encoder", "duration_predictor", "intonation", "pitch"):
        config[name] = reference[name]
    for name in ("network", "speaker_dim", "unet", "cond_drop_prob"):
        config.decoder[name] = reference.decoder[name]
    graphdef, params = tts.init(config, jax.random.key(0))
    batch = tiny_batch()
    loss, metrics = tts.make_loss_fn(graphdef, config, train=False)(params, batch, jax.random.key(1))
    assert "x0_mse" in metrics and "flow_mse" not in metrics and np.isfinite(loss)
    out = tts.generate(graphdef, params, config, batch["tokens"], batch["token_mask"], batch["speaker"],
                       jax.random.key(2), sigma=0.5)
    assert np.all(np.isfinite(out.mel))
    with pytest.raises(ValueError, match="not \\['steps'\\]"):
        tts.generate(graphdef, params, config, batch["tokens"], batch["token_mask"], batch["speaker"],
                     jax.random.key(2), steps=3)
