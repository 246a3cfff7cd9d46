"""The denoising objectives (edm, ict, ect, cd, ctm): their parameterisations over a network, their
samplers' levels, and each one training and sampling the TTS decoder through the model's own loss
and generate, with the context it needs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspeech import objectives
from jaxspeech.models import tts
from jaxspeech.noise_levels import karras_sigmas, log_sigma_time
from jaxspeech.objectives.parameterisation import (
    consistency_function,
    consistency_levels,
    ctm_trajectory,
    edm_denoiser,
    guided,
)
from jaxspeech.train.recipes.tts_teacher import params_from_teacher
from jaxspeech.train.step import TrainProgress

from tests.models.test_tts import tiny_batch, tiny_config

DENOISING = ("edm", "ict", "ect", "cd", "ctm")


class Levels:  # attribute access, as a ConfigDict gives
    sigma_data, sigma_min, sigma_max, rho = 1.0, 0.002, 80.0, 7.0


def recording_network(seen):
    """A network that records the time it reads and returns a fixed function of its input."""

    def network(x, time, cond):
        seen.append(time)
        return jnp.tanh(x) + 0.3

    return network


def test_consistency_parameterisation_meets_the_boundary_condition_and_reads_log_sigma_time():
    seen = []
    fn = consistency_function(recording_network(seen), Levels)
    x = jax.random.normal(jax.random.key(0), (3, 4, 2))
    np.testing.assert_allclose(fn(x, jnp.full(3, Levels.sigma_min), None), x, rtol=1e-6)
    fn(x, jnp.array([0.002, 1.0, 80.0]), None)
    np.testing.assert_allclose(seen[-1], [0.0, log_sigma_time(1.0), 1.0], atol=1e-6)
    # The EDM denoiser has no boundary condition: at sigma_min it already leans on the network.
    assert not np.allclose(edm_denoiser(recording_network([]), Levels)(x, jnp.full(3, 0.002), None), x)


def test_ctm_trajectory_reads_both_levels_and_stays_put_when_it_does_not_jump():
    seen = []
    jump = ctm_trajectory(recording_network(seen), Levels)
    x = jax.random.normal(jax.random.key(1), (2, 5, 2))
    t, s = jnp.array([80.0, 1.0]), jnp.array([0.002, 1.0])
    out = jump(x, t, s, None)
    np.testing.assert_allclose(seen[-1], jnp.stack([log_sigma_time(t), log_sigma_time(s)], axis=-1), atol=1e-6)
    np.testing.assert_allclose(out[1], x[1], rtol=1e-6)  # s = t


def test_guidance_of_a_trajectory_guides_with_both_levels_repeated():
    jump = lambda x, t, s, cond: x * cond + (t - s)[:, None]
    x, t, s = jnp.ones((2, 3)), jnp.array([2.0, 3.0]), jnp.array([1.0, 0.5])
    cond, uncond = jnp.array([[2.0], [4.0]]), jnp.zeros((1, 1))
    got = guided(jump, uncond, 1.5)(x, t, s, cond)
    c, u = jump(x, t, s, cond), jump(x, t, s, jnp.zeros((2, 1)))
    np.testing.assert_allclose(got, c + 1.5 * (c - u))
    assert guided(jump, None, None) is jump


def test_sampler_levels_are_the_top_of_a_karras_grid_or_the_given_ones():
    assert consistency_levels(Levels, 1, ()) == (80.0,)
    grid = karras_sigmas(3)
    np.testing.assert_allclose(consistency_levels(Levels, 2, ()), [80.0, float(grid[1])], rtol=1e-6)
    assert consistency_levels(Levels, 1, (80.0, 0.8)) == (80.0, 0.8)
    with pytest.raises(ValueError, match="strictly decreasing"):
        consistency_levels(Levels, 1, (0.8, 80.0))
    with pytest.raises(ValueError, match="steps must be a Python int >= 1"):
        consistency_levels(Levels, 0, ())
    assert objectives.get("cd").evaluations(steps=3, sigmas=()) == 3
    assert objectives.get("ctm").evaluations(steps=1, sigmas=(80.0, 1.0)) == 2
    assert objectives.get("edm").evaluations(steps=10, method="heun") == 19


def _config(objective):
    config = tts.with_objective(tiny_config(), objective)
    config.decoder.noise_around_mu = True
    config.decoder.cond_drop_prob = 0.0
    return config


@pytest.mark.parametrize("objective", DENOISING)
def test_each_objective_trains_and_samples_the_tts_decoder(objective):
    config = _config(objective)
    graphdef, params = tts.init(config, jax.random.key(0))
    found = objectives.get(objective)
    teacher = None
    if found.teacher:
        teacher_graphdef, teacher_params = tts.init(_config(found.teacher), jax.random.key(1))
        teacher = tts.decoder_network(teacher_graphdef, teacher_params)
        params = params_from_teacher(params, teacher_params)
    loss_fn = tts.make_loss_fn(graphdef, config, total_steps=100, teacher=teacher)
    progress = TrainProgress(jnp.int32(60), params if "target" in found.needs else None)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, tiny_batch(), jax.random.key(2),
                                                                       progress)
    assert np.isfinite(float(loss)) and f"{objective}_loss" in metrics
    assert float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))) > 0
    if objective == "ict":
        # s0 = 10 to s1 = 1280 over 100 steps: K' = floor(100 / 8) = 12, so step 60 has doubled 5 times.
        assert int(metrics["grid_size"]) == 321
    batch = tiny_batch()
    options = {"steps": 2} if objective != "edm" else {"steps": 3, "method": "heun"}
    out = tts.generate(graphdef, params, config, batch["tokens"], batch["token_mask"], batch["speaker"],
                       jax.random.key(3), **options)
    assert np.all(np.isfinite(out.mel))


def test_a_student_without_its_context_says_what_is_missing():
    config = _config("cd")
    graphdef, params = tts.init(config, jax.random.key(0))
    with pytest.raises(ValueError, match="distils a teacher: pass its decoder network"):
        tts.make_loss_fn(graphdef, config)
    cd = objectives.get("cd")
    with pytest.raises(ValueError, match=r"needs \['target', 'teacher'\]"):
        cd.loss(lambda x, t, c: x, jnp.ones((2, 3)), jax.random.key(0), mask=None, cond=None,
                config=type("C", (), cd.default_config()))
    with pytest.raises(ValueError, match="needs context.total_steps"):
        objectives.get("ict").loss(lambda x, t, c: x, jnp.ones((2, 3)), jax.random.key(0), mask=None, cond=None,
                                   config=type("C", (), objectives.get("ict").default_config()))


def test_params_from_teacher_switch_new_inputs_off():
    teacher = {"time": jnp.ones((3, 2)), "bias": jnp.arange(2.0)}
    student = params_from_teacher({"time": jnp.full((6, 2), 7.0), "bias": jnp.zeros(2)}, teacher)
    np.testing.assert_array_equal(student["time"], np.concatenate([np.ones((3, 2)), np.zeros((3, 2))]))
    np.testing.assert_array_equal(student["bias"], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"is \(2, 2\) in the student but \(3, 2\) in the teacher"):
        params_from_teacher({"time": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}, teacher)
