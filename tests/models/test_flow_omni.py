"""Flow-Omni: the per-frame flow head, causal teacher forcing, the loss lowering both terms, and cached
generation equal to re-running the model on its own frames."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxspeech.models import llm
from jaxspeech.models.univoice.config import UniVoiceConfig
from jaxspeech.models.univoice.flow_omni import FlowOmni, _draw_frame, generate, make_loss_fn
from jaxspeech.models.univoice.model import Rows, init
from jaxspeech.nn.flow_head import FlowHead

F, V = 8, 24
CONFIG = UniVoiceConfig(llm=llm.llm_config("tiny", vocab_size=V, num_layers=2, initializer_range=0.2), n_mels=F,
                        encoder_dim=16, encoder_layers=1, encoder_heads=2, encoder_conv_kernel=3,
                        encoder_subsampling_channels=4, tts_head="flow_omni", flow_head_width=32, flow_head_blocks=2,
                        mel_mean=-3.0, mel_std=2.0)  # fmt: skip


def test_flow_head_starts_at_zero_and_reads_its_condition():
    head = FlowHead(F, 16, width=32, blocks=2, rngs=nnx.Rngs(0))
    x, t, z = jnp.ones((5, F)), jnp.linspace(0, 1, 5), jax.random.normal(jax.random.key(1), (5, 16))
    assert np.all(np.asarray(head(x, t, z)) == 0)  # adaLN-zero: the untrained velocity is 0
    params = nnx.state(head, nnx.Param)
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape), params)
    nnx.update(head, params)
    assert np.abs(np.asarray(head(x, t, z) - head(x, t, -z))).max() > 1e-3


@pytest.fixture(scope="module")
def model():
    graphdef, params = init(CONFIG, jax.random.key(0))
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(3), p.shape), params)
    return graphdef, params


def _rows(frames, lengths, text_lengths=(5, 3)):
    batch = frames.shape[0]
    text = jnp.tile(jnp.arange(3, 9)[None], (batch, 1))
    return Rows(text, jnp.array(text_lengths), None, jnp.zeros(batch, jnp.int32), frames, None, jnp.array(lengths),
                jnp.zeros(batch))


def test_the_state_of_frame_k_reads_only_the_text_and_earlier_frames(model):
    graphdef, params = model
    frames = jax.random.normal(jax.random.key(4), (2, 10, F))
    out = nnx.merge(graphdef, params)(_rows(frames, (10, 7)))
    changed = nnx.merge(graphdef, params)(_rows(frames.at[:, 5:].add(1.0), (10, 7)))
    np.testing.assert_allclose(changed.states[:, :6], out.states[:, :6], atol=1e-5)
    assert np.abs(np.asarray(changed.states[0, 6:] - out.states[0, 6:])).max() > 1e-4
    assert isinstance(nnx.merge(graphdef, params), FlowOmni)


def test_a_few_steps_lower_the_flow_and_stop_losses(model):
    graphdef, params = model
    rng = np.random.default_rng(0)
    tokens = rng.integers(4, V, (4, 7))
    tokens[:, 0] = 1
    batch = dict(tokens=jnp.asarray(tokens), token_mask=jnp.ones((4, 7), bool),
                 target_mask=jnp.asarray(np.arange(7)[None] >= 1).repeat(4, 0),
                 mel=jnp.asarray(rng.normal(size=(4, 32, F)) - 3, jnp.float32),
                 mel_mask=jnp.asarray(np.arange(32)[None] < np.array([[32], [20], [32], [25]])),
                 tts=jnp.array([True, True, False, True]))  # fmt: skip
    loss_fn = make_loss_fn(graphdef, lm_weight=1.0, stop_weight=1.0)
    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state):
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, jax.random.key(5))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    first = None
    for _ in range(40):
        params, opt_state, metrics = step(params, opt_state)
        first = first or {k: float(v) for k, v in metrics.items()}
    assert (first["tts_rows"], first["asr_rows"]) == (3, 1)
    assert float(metrics["flow_mse"]) < 0.7 * first["flow_mse"]
    assert float(metrics["stop_loss"]) < 0.5 * first["stop_loss"]
    assert float(metrics["lm_loss"]) < 0.5 * first["lm_loss"]


def test_cached_generation_equals_the_model_rerun_on_its_own_frames(model):
    graphdef, params = model
    prompt = jax.random.normal(jax.random.key(6), (2, 6, F)) - 3.0
    text = jnp.tile(jnp.arange(3, 9)[None], (2, 1))
    frames, lengths = generate(graphdef, params, jax.random.key(7), text, jnp.array([5, 3]), prompt,
                               jnp.array([6, 2]), max_frames=5, head_steps=3, temperature=1e-6)  # fmt: skip
    net = nnx.merge(graphdef, params)
    for row, (p_len, t_len) in enumerate([(6, 5), (2, 3)]):
        n = int(lengths[row])
        assert 1 <= n <= 5 and np.all(np.asarray(frames[row, n:]) == 0)
        whole = jnp.concatenate([prompt[row, :p_len], frames[row, :n]])[None]
        out = net(Rows(text[row:row + 1], jnp.array([t_len]), None, jnp.zeros(1, jnp.int32), CONFIG.normalise(whole),
                       None, jnp.array([p_len + n]), jnp.zeros(1)))  # fmt: skip
        for k in range(n):  # each generated frame is the head's draw from the teacher-forced state before it
            drawn = _draw_frame(net.flow_head, jax.random.key(0), out.states[:, p_len + k], F, 3, 1e-6)
            np.testing.assert_allclose(CONFIG.denormalise(drawn)[0], frames[row, k], atol=1e-3)
        stops = np.asarray(out.stop_logits[0, p_len:p_len + n]) > 0
        assert not stops[:-1].any() and (stops[-1] or n == 5)  # it stopped where the stop head first fired


def test_flow_omni_config_is_checked():
    with pytest.raises(ValueError, match="tts_head"):
        dataclasses.replace(CONFIG, tts_head="diffusion")
