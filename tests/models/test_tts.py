import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxspeech import audio
from jaxspeech.audio.pitch_comb import harmonic_comb_mel
from jaxspeech.models import hashed_graph, tts
from jaxspeech.nn.length_regulator import length_regulate

N_MELS, VOCAB, BREAK = 8, 10, 1
WEIGHTED = ("duration_loss", "prior_loss", "flow_mse", "intonation_ce", "pitch_mse", "voicing_bce")


def tiny_config(kind="unet"):
    config = tts.default_config()
    config.update(dict(n_mels=N_MELS, vocab_size=VOCAB, num_speakers=2, break_token=BREAK, mel_mean=-2.0, mel_std=1.5))
    config.encoder.update(dict(d_model=16, num_layers=1, num_heads=2, ff_mult=2, prenet_layers=1, prenet_kernel=3,
                               dropout=0.0))
    config.duration_predictor.update(dict(channels=16, dropout=0.0))
    config.intonation.update(dict(num_tokens=3, contour_points=8, lstm_hidden=8, attention_dim=8, num_heads=2))
    config.decoder.update(dict(network=kind, speaker_dim=4))
    # No transformer blocks inside the tiny U-Net: they are tested in tests/nn, and compile time counts here.
    config.decoder.unet.update(dict(channels=(8, 8), time_dim=16, num_blocks=0, num_mid_blocks=1, norm_groups=4,
                                    dropout=0.0))
    config.decoder.dit.update(dict(d_model=16, num_layers=1, num_heads=2, ff_mult=2, dropout=0.0))
    config.decoder.cond_drop_prob = 0.2
    config.pitch.update(dict(enabled=True, channels=8, layers=1, kernel=3, dropout=0.0))
    return config


def tiny_batch():
    rng = np.random.default_rng(0)
    batch, length, frames = 2, 7, 30
    return dict(
        tokens=jnp.array([[2, 3, BREAK, 4, 5, 6, 7], [2, BREAK, 3, 8, 0, 0, 0]]),
        token_mask=jnp.arange(length)[None] < jnp.array([[7], [4]]),
        speaker=jnp.array([0, 1]),
        mel=jnp.asarray(rng.normal(size=(batch, frames, N_MELS)) - 2.0, jnp.float32),
        mel_mask=jnp.arange(frames)[None] < jnp.array([[30], [21]]),
        boundary_word_start=jnp.array([[0, 3], [0, 2]]),
        boundary_word_end=jnp.array([[2, 6], [1, 4]]),
        boundary_mask=jnp.array([[True, True], [True, False]]),
        boundary_contour=jnp.asarray(rng.normal(size=(batch, 2, 8)), jnp.float32),
        log_f0=jnp.asarray(np.log(150.0) + 0.2 * np.sin(np.arange(frames) / 4.0)[None] + [[0.0], [0.3]], jnp.float32),
        voiced=jnp.asarray(np.arange(frames)[None] % 5 != 0).repeat(batch, 0),
    )


def _boundary_args(batch):
    return {name: batch[name] for name in tts.BOUNDARY_KEYS}


def _train(kind, steps=30):
    """Adam on one batch with a fixed key; returns (graphdef, params, losses, gradients).

    ``gradients(params, weights)`` are the gradients of sum_i weights[i] * metrics[WEIGHTED[i]]:
    loss weights are an input so that one compiled step serves training and the per-term checks.
    """
    config, batch = tiny_config(kind), tiny_batch()
    if kind == "dit":
        config.decoder.segment_frames = 16  # also covers Matcha's random-segment decoder training
    graphdef, params = tts.init(config, jax.random.key(0))
    loss_fn = tts.make_loss_fn(graphdef, config)
    optimizer = optax.adam(3e-3)

    @jax.jit
    def train_step(params, opt_state, weights):
        def weighted(p):
            _, metrics = loss_fn(p, batch, jax.random.key(7))
            return sum(w * metrics[name] for w, name in zip(weights, WEIGHTED)), metrics

        grads, metrics = jax.grad(weighted, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics["loss"], grads

    opt_state = optimizer.init(params)
    losses = []
    for _ in range(steps):
        params, opt_state, loss, _ = train_step(params, opt_state, jnp.ones(len(WEIGHTED)))
        losses.append(float(loss))

    def gradients(params, weights):
        return train_step(params, opt_state, jnp.asarray(weights, jnp.float32))[3]

    return graphdef, params, losses, gradients


@pytest.fixture(scope="module")
def trained_unet():
    return _train("unet")


@pytest.mark.parametrize("kind", ["unet", "dit"])
def test_loss_decreases_when_overfitting_one_batch(kind, trained_unet):
    losses = trained_unet[2] if kind == "unet" else _train(kind)[2]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses


def _subtree_norms(grads):
    return {name: float(np.sqrt(sum(np.sum(np.square(leaf)) for leaf in jax.tree.leaves(sub))))
            for name, sub in grads.items()}


def test_duration_and_intonation_losses_do_not_reach_the_encoder(trained_unet):
    _, params, _, gradients = trained_unet
    encoder = ("encoder", "intonation")
    duration_grads = gradients(params, [1, 0, 0, 0, 0, 0])
    norms = _subtree_norms(duration_grads)
    assert all(norms[name] == 0.0 for name in encoder), norms
    assert norms["duration"] > 0
    intonation_grads = gradients(params, [0, 0, 0, 1, 0, 0])
    norms = _subtree_norms(intonation_grads)
    assert all(norms[name] == 0.0 for name in encoder + ("duration", "decoder")), norms
    assert norms["intonation_predictor"] > 0
    # ...whereas the prior and flow losses do train the encoder.
    prior_grads = gradients(params, [0, 1, 1, 0, 0, 0])
    norms = _subtree_norms(prior_grads)
    assert norms["encoder"] > 0 and norms["intonation"] > 0 and norms["duration"] == 0
    # The pitch predictor reads detached encoder states, like the duration predictor.
    norms = _subtree_norms(gradients(params, [0, 0, 0, 0, 1, 1]))
    assert all(norms[name] == 0.0 for name in encoder + ("duration", "decoder")), norms
    assert norms["pitch"] > 0


def test_intonation_loss_is_the_soft_cross_entropy_to_the_reference_weights():
    config, batch = tiny_config(), tiny_batch()
    graphdef, params = tts.init(config, jax.random.key(3))
    _, metrics = tts.make_loss_fn(graphdef, config, train=False)(params, batch, jax.random.key(0))
    enc = tts.encode(graphdef, params, batch["tokens"], batch["token_mask"], batch["speaker"], _boundary_args(batch),
                     contour=batch["boundary_contour"])
    target = np.asarray(enc["intonation_weights"], np.float64)  # [B,N,H,K]
    logits = np.asarray(enc["intonation_logits"], np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    present = np.asarray(batch["boundary_mask"])
    per_boundary = -(target * log_probs).sum(-1).mean(-1)
    np.testing.assert_allclose(metrics["intonation_ce"], per_boundary[present].mean(), rtol=1e-5)
    hits = log_probs.mean(2).argmax(-1) == target.mean(2).argmax(-1)
    np.testing.assert_allclose(metrics["intonation_accuracy"], hits[present].mean(), rtol=1e-6)


def test_mas_durations_cover_the_mel_and_pure_encode_is_padding_safe():
    config, batch = tiny_config(), tiny_batch()
    graphdef, params = tts.init(config, jax.random.key(0))
    enc = tts.encode(graphdef, params, batch["tokens"], batch["token_mask"], batch["speaker"], _boundary_args(batch),
                     contour=batch["boundary_contour"])
    mel = (batch["mel"] - config.mel_mean) / config.mel_std
    path, durations = tts.align(enc["mu"], mel, batch["token_mask"], batch["mel_mask"])
    np.testing.assert_array_equal(durations.sum(1), batch["mel_mask"].sum(1))
    assert np.all(np.asarray(durations)[np.asarray(batch["token_mask"])] >= 1)
    np.testing.assert_array_equal(path.sum(1), batch["mel_mask"])  # one token per valid frame
    # Garbage in padded token slots changes nothing valid.
    junk = jnp.where(batch["token_mask"], batch["tokens"], 9)
    enc_junk = tts.encode(graphdef, params, junk, batch["token_mask"], batch["speaker"], _boundary_args(batch),
                          contour=batch["boundary_contour"])
    np.testing.assert_allclose(enc_junk["mu"], enc["mu"], atol=1e-5)
    np.testing.assert_allclose(enc_junk["log_durations"], enc["log_durations"], atol=1e-5)


def test_mas_gives_a_break_token_every_frame_of_a_pause():
    # Two words (3 and 2 phonemes) separated by a break token whose mean matches silence;
    # the audio has a 6-frame pause between the words, then the second word.
    speech = jnp.array([[2.0, 0.0], [0.0, 2.0], [2.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
    silence = jnp.array([-4.0, -4.0])
    mu = jnp.concatenate([speech[:3], silence[None], speech[3:]])[None]  # tokens: w w w | w w
    frames = jnp.concatenate([jnp.repeat(speech[:3], 2, axis=0), jnp.repeat(silence[None], 6, axis=0),
                              jnp.repeat(speech[3:], 3, axis=0), jnp.zeros((3, 2))])[None]
    mel_mask = jnp.arange(21)[None] < 18
    _, durations = tts.align(mu, frames + 0.1, jnp.ones((1, 6), bool), mel_mask)
    np.testing.assert_array_equal(durations[0], [2, 2, 2, 6, 3, 3])


def test_intonation_weights_are_distributions_and_one_hot_selects_a_token():
    config, batch = tiny_config(), tiny_batch()
    graphdef, params = tts.init(config, jax.random.key(0))
    enc = tts.encode(graphdef, params, batch["tokens"], batch["token_mask"], batch["speaker"], _boundary_args(batch),
                     contour=batch["boundary_contour"])
    weights = np.asarray(enc["intonation_weights"])
    assert weights.shape == (2, 2, 2, 3) and np.all(weights >= 0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    # Reference-free: an explicit choice puts all weight on that token, in every head.
    choice = jnp.array([[2, 0], [1, 1]])
    chosen = tts.encode(graphdef, params, batch["tokens"], batch["token_mask"], batch["speaker"],
                        _boundary_args(batch), intonation=choice)["intonation_weights"]
    np.testing.assert_array_equal(chosen.argmax(-1), np.broadcast_to(np.asarray(choice)[:, :, None], (2, 2, 2)))
    np.testing.assert_array_equal(chosen.max(-1), 1.0)
    # From text alone: the predictor's softmax, one per head.
    predicted = tts.encode(graphdef, params, batch["tokens"], batch["token_mask"], batch["speaker"],
                           _boundary_args(batch))
    assert predicted["intonation_logits"].shape == (2, 2, 2, 3)
    np.testing.assert_allclose(predicted["intonation_weights"], jax.nn.softmax(predicted["intonation_logits"], -1),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="boundary word spans"):
        tts.encode(graphdef, params, batch["tokens"], batch["token_mask"], batch["speaker"], intonation=choice)


@pytest.fixture(scope="module")
def synthesis(trained_unet):
    graphdef, params, _, _ = trained_unet
    config, batch = tiny_config(), tiny_batch()
    generate = functools.partial(tts.generate, graphdef, params, config, batch["tokens"], batch["token_mask"],
                                 batch["speaker"], jax.random.key(3), steps=3, **_boundary_args(batch))
    return graphdef, params, config, batch, generate


def test_generate_returns_finite_mels_of_the_predicted_length(synthesis):
    graphdef, params, config, batch, generate = synthesis
    intonation = jnp.array([[0, 0], [0, 0]])
    out = generate(intonation=intonation)
    mel, mel_mask = out.mel, out.mel_mask
    enc = tts.encode(graphdef, params, batch["tokens"], batch["token_mask"], batch["speaker"], _boundary_args(batch),
                     intonation=intonation)
    expected = np.ceil(np.where(batch["token_mask"], np.ceil(np.exp(enc["log_durations"])), 0).sum(1))
    np.testing.assert_array_equal(mel_mask.sum(1), expected)
    assert mel.shape == (2, tts.FRAME_BUCKET, N_MELS) and mel.shape[1] % tts.FRAME_BUCKET == 0
    assert np.all(np.isfinite(mel)) and np.all(np.asarray(mel)[~np.asarray(mel_mask)] == 0)
    # Same key, same inputs: deterministic. Another intonation token: different speech.
    np.testing.assert_array_equal(generate(intonation=intonation)[0], mel)
    other = generate(intonation=jnp.array([[2, 2], [2, 2]])).mel
    assert np.abs(np.asarray(other - mel)).max() > 1e-3
    # Guidance scale 0 is the conditional field.
    guided = generate(intonation=intonation, guidance_scale=0.0).mel
    np.testing.assert_allclose(guided, mel, atol=1e-4)
    # The pitch predictor's F0 and voicing cover exactly the valid frames.
    valid = np.asarray(mel_mask)
    assert out.f0.shape == out.voiced.shape == mel_mask.shape
    assert np.all(np.asarray(out.f0)[valid] > 0) and np.all(np.asarray(out.f0)[~valid] == 0)
    assert not np.any(np.asarray(out.voiced)[~valid])
    assert np.all((np.asarray(out.voiced) >= 0) & (np.asarray(out.voiced) <= 1))  # a voicing probability


def test_generate_without_pitch_gives_the_same_mel_and_takes_a_hashed_graphdef(synthesis):
    graphdef, params, config, batch, generate = synthesis
    intonation = jnp.array([[0, 0], [0, 0]])
    out = generate(intonation=intonation)
    # The pitch predictor is skipped when nobody reads its output; the mel does not depend on it.
    unpitched = generate(intonation=intonation, pitch=False)
    assert unpitched.f0 is None and unpitched.voiced is None
    np.testing.assert_array_equal(unpitched.mel, out.mel)
    # A graphdef hashed once and a frozen config give the same synthesis as the plain ones.
    hashed = tts.generate(hashed_graph.hashed(graphdef), params, ml_collections.FrozenConfigDict(config),
                          batch["tokens"], batch["token_mask"], batch["speaker"], jax.random.key(3), steps=3,
                          intonation=intonation, **_boundary_args(batch))
    np.testing.assert_array_equal(hashed.mel, out.mel)
    np.testing.assert_array_equal(hashed.f0, out.f0)


def test_generate_rejects_bad_input(synthesis):
    graphdef, params, config, batch, generate = synthesis
    with pytest.raises(ValueError, match="unknown speaker"):
        tts.generate(graphdef, params, config, batch["tokens"], batch["token_mask"], jnp.array([0, 5]),
                     jax.random.key(0))
    with pytest.raises(ValueError, match="empty text"):
        tts.generate(graphdef, params, config, batch["tokens"], batch["token_mask"].at[1].set(False),
                     batch["speaker"], jax.random.key(0))
    with pytest.raises(ValueError, match="token ids"):
        tts.generate(graphdef, params, config, batch["tokens"].at[0, 0].set(VOCAB), batch["token_mask"],
                     batch["speaker"], jax.random.key(0))
    with pytest.raises(ValueError, match="intonation tokens"):
        generate(intonation=jnp.array([[0, 3], [0, 0]]))
    with pytest.raises(ValueError, match="guidance_scale"):
        generate(guidance_scale=float("nan"))
    with pytest.raises(ValueError, match="need all of"):
        tts.generate(graphdef, params, config, batch["tokens"], batch["token_mask"], batch["speaker"],
                     jax.random.key(0), boundary_mask=batch["boundary_mask"])


def test_random_segment_takes_one_window_inside_the_valid_frames():
    mel_mask = jnp.arange(10)[None] < jnp.array([[10], [6], [3]])
    frames = jnp.broadcast_to(jnp.arange(10.0)[None, :, None], (3, 10, 2))
    for seed in range(5):
        window, window_mask = tts.random_segment(jax.random.key(seed), [frames, mel_mask], mel_mask, 4)
        starts = np.asarray(window[:, 0, 0]).astype(int)
        np.testing.assert_array_equal(window[:, :, 0], starts[:, None] + np.arange(4))
        assert starts[0] <= 6 and starts[1] <= 2 and starts[2] == 0
        np.testing.assert_array_equal(window_mask.sum(1), [4, 4, 3])


def test_config_errors_name_the_problem():
    config = tiny_config()
    config.decoder.network = "wavenet"
    with pytest.raises(ValueError, match="decoder network"):
        tts.init(config, jax.random.key(0))
    config = tiny_config()
    config.break_token = VOCAB
    with pytest.raises(ValueError, match="break_token"):
        tts.init(config, jax.random.key(0))


def test_contour_reconstruction_loss_is_the_relative_squared_error_and_trains_the_intonation_encoder():
    config, batch = tiny_config(), tiny_batch()
    config.intonation.reconstruction_weight = 0.5
    graphdef, params = tts.init(config, jax.random.key(4))
    loss_fn = tts.make_loss_fn(graphdef, config, train=False)
    _, metrics = loss_fn(params, batch, jax.random.key(0))
    enc = tts.encode(graphdef, params, batch["tokens"], batch["token_mask"], batch["speaker"], _boundary_args(batch),
                     contour=batch["boundary_contour"])
    decoded = np.asarray(enc["intonation_contour"], np.float64)  # [B,N,C]
    reference = np.asarray(batch["boundary_contour"], np.float64)
    present = np.asarray(batch["boundary_mask"])
    want = np.square(decoded - reference)[present].sum() / np.square(reference)[present].sum()
    np.testing.assert_allclose(metrics["intonation_reconstruction"], want, rtol=1e-5)
    terms = sum(float(metrics[name]) for name in WEIGHTED)
    np.testing.assert_allclose(metrics["loss"], terms + 0.5 * want, rtol=1e-5)

    def reconstruction(p):
        return loss_fn(p, batch, jax.random.key(0))[1]["intonation_reconstruction"]

    grads = jax.grad(reconstruction)(params)
    inner = _subtree_norms(grads["intonation"])
    assert all(inner[name] > 0 for name in ("lstm", "query", "tokens", "contour_head")), inner
    norms = _subtree_norms(grads)
    assert all(norms[name] == 0.0 for name in ("encoder", "decoder", "intonation_predictor")), norms
    # Without the weight there is no head (old checkpoints keep their parameter tree).
    assert "contour_head" not in tts.init(tiny_config(), jax.random.key(4))[1]["intonation"]


def test_pitch_terms_equal_a_direct_computation_for_a_constant_prediction():
    config, batch = tiny_config(), tiny_batch()
    graphdef, params = tts.init(config, jax.random.key(5))
    # A zero output kernel makes the prediction its bias (b0, b1) on every frame.
    params["pitch"]["out"]["kernel"] = jnp.zeros_like(params["pitch"]["out"]["kernel"])
    params["pitch"]["out"]["bias"] = jnp.array([0.7, -0.4])
    _, metrics = tts.make_loss_fn(graphdef, config, train=False)(params, batch, jax.random.key(0))
    valid = np.asarray(batch["mel_mask"])
    voiced = np.asarray(batch["voiced"]) & valid
    target = (np.asarray(batch["log_f0"], np.float64) - config.pitch.log_f0_mean) / config.pitch.log_f0_std
    np.testing.assert_allclose(metrics["pitch_mse"], np.square(0.7 - target[valid]).mean(), rtol=1e-5)
    bce = np.where(voiced, np.log1p(np.exp(0.4)), np.log1p(np.exp(-0.4)))  # logit -0.4
    np.testing.assert_allclose(metrics["voicing_bce"], bce[valid].mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["voicing_accuracy"], (~voiced[valid]).mean(), rtol=1e-6)
    np.testing.assert_allclose(metrics["loss"], sum(float(metrics[name]) for name in WEIGHTED), rtol=1e-5)
    with pytest.raises(KeyError, match="log_f0"):
        tts.make_loss_fn(graphdef, config)(params, {k: v for k, v in batch.items() if k != "log_f0"},
                                           jax.random.key(0))


def test_pitch_inputs_place_each_frame_inside_its_token():
    hidden = jnp.zeros((1, 3, 4))
    durations = jnp.array([[2, 3, 1]])
    frames, mask = length_regulate(tts.pitch_inputs(hidden, durations), durations, jnp.ones((1, 3), bool), 8)
    np.testing.assert_array_equal(frames[0, :6, -2], [0, 0, 2, 2, 2, 5])  # first frame of the token
    np.testing.assert_array_equal(frames[0, :6, -1], [2, 2, 3, 3, 3, 1])  # its frame count
    index = np.arange(8)
    place = np.clip((index + 0.5 - np.asarray(frames[0, :, -2])) / np.maximum(np.asarray(frames[0, :, -1]), 1), 0, 1)
    np.testing.assert_allclose(place[:6], [0.25, 0.75, 1 / 6, 0.5, 5 / 6, 0.5])
    assert mask.sum() == 6


def test_models_without_a_pitch_predictor_return_no_pitch():
    config = tiny_config()
    config.pitch.enabled = False
    graphdef, params = tts.init(config, jax.random.key(0))
    assert "pitch" not in params  # old checkpoints keep their parameter tree
    batch = tiny_batch()
    out = tts.generate(graphdef, params, config, batch["tokens"], batch["token_mask"], batch["speaker"],
                       jax.random.key(0), steps=2)
    assert out.f0 is None and out.voiced is None


@pytest.mark.parametrize("kind,decoder_input", [("unet", "log_f0"), ("dit", "log_f0"), ("unet", "harmonic_comb")])
def test_decoder_reads_the_recordings_pitch_in_training_and_the_predicted_pitch_in_synthesis(kind, decoder_input):
    batch = tiny_batch()
    shifted = dict(batch, log_f0=batch["log_f0"] + 0.3)
    runs = {}
    for reads in (False, True):
        config = tiny_config(kind)
        config.pitch.condition_decoder, config.pitch.decoder_input = reads, decoder_input
        graphdef, params = tts.init(config, jax.random.key(6))
        # adaLN-zero (DiT) starts as the zero field: perturb the decoder so that its output depends on its input.
        leaves, treedef = jax.tree.flatten(params["decoder"])
        keys = jax.random.split(jax.random.key(7), len(leaves))
        params["decoder"] = jax.tree.unflatten(
            treedef, [x + 0.1 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])
        loss_fn = jax.jit(tts.make_loss_fn(graphdef, config, train=False))
        flow = [float(loss_fn(params, b, jax.random.key(0))[1]["flow_mse"]) for b in (batch, shifted)]
        # Another pitch predictor output (its bias) with the same noise key.
        moved = jax.tree.map(lambda x: x, params)
        moved["pitch"]["out"]["bias"] = moved["pitch"]["out"]["bias"] + jnp.array([0.5, 0.0])
        mels = [tts.generate(graphdef, p, config, batch["tokens"], batch["token_mask"], batch["speaker"],
                             jax.random.key(1), steps=2).mel for p in (params, moved)]
        runs[reads] = flow, mels
        if reads:
            guided = tts.generate(graphdef, params, config, batch["tokens"], batch["token_mask"], batch["speaker"],
                                  jax.random.key(1), steps=2, guidance_scale=0.0).mel
            np.testing.assert_allclose(guided, mels[0], atol=1e-5)
            null = tts.null_condition(config, batch["mel_mask"])
            np.testing.assert_array_equal(null["pitch"], 0.0)
            field = tts.decoder_network(graphdef, params)
            x = jnp.zeros((2, 30, N_MELS))
            with pytest.raises(ValueError, match="condition_decoder"):
                field(x, jnp.zeros(2), {"mu": x, "speaker": batch["speaker"], "mask": batch["mel_mask"]})
    (flow_off, mels_off), (flow_on, mels_on) = runs[False], runs[True]
    assert flow_off[0] == flow_off[1] and abs(flow_on[0] - flow_on[1]) > 1e-6  # teacher forcing
    np.testing.assert_array_equal(mels_off[0], mels_off[1])
    assert np.abs(np.asarray(mels_on[0] - mels_on[1])).max() > 1e-4  # synthesis follows the predicted F0


def test_pitch_condition_stacks_log_f0_and_voicing_and_zeroes_padding():
    pitch = tts.default_config().pitch
    mask = jnp.array([[True, True, False]])
    out = tts.pitch_condition(pitch, jnp.array([[0.5, -1.0, 3.0]]), jnp.array([[1.0, 0.25, 1.0]]), mask)
    np.testing.assert_array_equal(out, [[[0.5, 1.0], [-1.0, 0.25], [0.0, 0.0]]])


def test_the_harmonic_comb_condition_draws_the_f0_on_the_presets_filters_scaled_by_the_voicing():
    pitch = tts.default_config().pitch
    pitch.decoder_input = "harmonic_comb"
    log_f0, voicing = jnp.array([[0.5, -1.0, 3.0]]), jnp.array([[1.0, 0.25, 1.0]])
    out = tts.pitch_condition(pitch, log_f0, voicing, jnp.array([[True, True, False]]))
    n_mels = audio.get_preset(pitch.mel_preset).n_mels
    assert out.shape == (1, 3, n_mels + 1) and tts.pitch_channels(pitch) == n_mels + 1
    comb = harmonic_comb_mel(jnp.exp(log_f0 * pitch.log_f0_std + pitch.log_f0_mean), pitch.mel_preset)
    np.testing.assert_allclose(out[0, :2, :n_mels], comb[0, :2] * voicing[0, :2, None], atol=1e-6)
    np.testing.assert_array_equal(out[0, :2, n_mels], voicing[0, :2])
    np.testing.assert_array_equal(out[0, 2], 0.0)
    pitch.decoder_input = "f0_hz"
    with pytest.raises(ValueError, match="decoder_input"):
        tts.pitch_channels(pitch)


def test_a_saved_config_gains_the_fields_added_since_at_values_that_keep_its_behaviour():
    # A config saved before encoder.architecture, decoder.unet.block/head_dim and ctm.adaptive_weight existed.
    saved = tts.with_objective(tts.default_config(), "ctm").to_dict()
    del saved["encoder"]["architecture"], saved["decoder"]["unet"]["block"], saved["decoder"]["unet"]["head_dim"]
    del saved["decoder"]["ctm"]["adaptive_weight"]
    saved["decoder"]["ctm"]["denoising_weight"] = 0.1
    upgraded = tts.upgrade_saved(ml_collections.ConfigDict(saved))
    assert upgraded.encoder.architecture == "pre_ln" and upgraded.decoder.unet.block == "rope"
    assert upgraded.decoder.unet.head_dim is None and upgraded.decoder.ctm.adaptive_weight is False
    assert upgraded.decoder.ctm.denoising_weight == 0.1 and "edm" not in upgraded.decoder
    # A current config is unchanged, and fields a run holds keep their values.
    current = tts.with_objective(tts.default_config(), "edm")
    current.encoder.architecture = "matcha"
    assert tts.upgrade_saved(current).to_dict() == current.to_dict()
