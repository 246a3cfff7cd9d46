import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxspeech.losses.ctc import ctc_loss
from jaxspeech.models import ctc_asr
from jaxspeech.nn.subsampling import subsampled_length
from jaxspeech.samplers.ctc_decoding import greedy_decode


def tiny_config(**overrides):
    config = ctc_asr.default_config()
    config.update(
        dict(n_mels=12, vocab_size=5, d_model=16, num_layers=1, num_heads=2, ff_mult=2, conv_kernel=5,
             dropout=0.0, subsampling_channels=4)
    )
    config.update(overrides)
    return config


def tiny_batch(seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([40, 29])
    mel = rng.normal(size=(2, 40, 12)).astype(np.float32)
    return {
        "mel": jnp.asarray(mel),
        "mel_mask": jnp.asarray(np.arange(40)[None] < lengths[:, None]),
        "tokens": jnp.array([[1, 2, 3], [4, 4, 0]], jnp.int32),
        "token_mask": jnp.array([[True, True, True], [True, True, False]]),
    }


def test_pure_apply_matches_module_and_is_padding_invariant():
    config = tiny_config()
    graphdef, params = ctc_asr.init(config, jax.random.key(0))
    batch = tiny_batch()
    logits, mask = jax.jit(functools.partial(ctc_asr.apply, graphdef))(params, batch["mel"], batch["mel_mask"])
    assert logits.shape == (2, subsampled_length(40), 5) and logits.dtype == jnp.float32
    np.testing.assert_array_equal(mask.sum(1), [subsampled_length(40), subsampled_length(29)])
    module_logits, _ = nnx.merge(graphdef, params)(batch["mel"], batch["mel_mask"])
    np.testing.assert_allclose(module_logits, logits, atol=1e-5)
    # Garbage (even NaN) in the padding and a different padded length leave valid logits alone.
    noisy = jnp.where(batch["mel_mask"][..., None], batch["mel"], jnp.nan)
    short_logits, short_mask = ctc_asr.apply(graphdef, params, noisy[1:, :29], batch["mel_mask"][1:, :29])
    np.testing.assert_allclose(short_logits[0][short_mask[0]], logits[1][mask[1]], atol=1e-4)
    noisy_logits, _ = ctc_asr.apply(graphdef, params, noisy, batch["mel_mask"])
    np.testing.assert_allclose(noisy_logits[mask], logits[mask], atol=1e-4)


def test_vmap_over_stacked_batches_and_dropout_key():
    config = tiny_config(dropout=0.2)
    graphdef, params = ctc_asr.init(config, jax.random.key(1))
    batch = tiny_batch()
    fwd = functools.partial(ctc_asr.apply, graphdef, params)
    stacked = jax.vmap(lambda m, k: fwd(m[None], k[None])[0][0])(batch["mel"], batch["mel_mask"])
    single = fwd(batch["mel"][1:], batch["mel_mask"][1:])[0][0]
    np.testing.assert_allclose(stacked[1], single, atol=1e-4)
    a = fwd(batch["mel"], batch["mel_mask"], key=jax.random.key(3))[0]
    b = fwd(batch["mel"], batch["mel_mask"], key=jax.random.key(3))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, fwd(batch["mel"], batch["mel_mask"])[0])


def test_loss_is_mean_length_normalised_ctc_and_drops_infeasible_utterances():
    config = tiny_config()
    graphdef, params = ctc_asr.init(config, jax.random.key(2))
    batch = dict(tiny_batch())
    # Second utterance: 8 frames of audio -> 1 output frame, cannot hold 2 labels.
    batch["mel_mask"] = jnp.arange(40)[None] < jnp.array([[40], [8]])
    loss_fn = ctc_asr.make_loss_fn(graphdef, config, train=False)
    loss, metrics = jax.jit(loss_fn)(params, batch, jax.random.key(0))
    logits, mask = ctc_asr.apply(graphdef, params, batch["mel"], batch["mel_mask"])
    nll = ctc_loss(logits, mask, batch["tokens"], batch["token_mask"])
    np.testing.assert_allclose(loss, nll[0] / 3, rtol=1e-5)
    assert int(metrics["ctc_infeasible"]) == 1
    assert int(metrics["frames"]) == subsampled_length(40) + subsampled_length(8)
    np.testing.assert_allclose(metrics["ctc_loss"], loss)
    grads = jax.jit(jax.grad(lambda p: loss_fn(p, batch, jax.random.key(0))[0]))(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    # With both feasible: the mean of the two length-normalised losses.
    batch["mel_mask"] = tiny_batch()["mel_mask"]
    loss, metrics = loss_fn(params, batch, jax.random.key(0))
    logits, mask = ctc_asr.apply(graphdef, params, batch["mel"], batch["mel_mask"])
    nll = ctc_loss(logits, mask, batch["tokens"], batch["token_mask"])
    np.testing.assert_allclose(loss, (nll[0] / 3 + nll[1] / 2) / 2, rtol=1e-5)
    assert int(metrics["ctc_infeasible"]) == 0


def test_training_loss_uses_the_key_for_specaugment():
    config = tiny_config()
    graphdef, params = ctc_asr.init(config, jax.random.key(3))
    loss_fn = jax.jit(ctc_asr.make_loss_fn(graphdef, config))
    batch = tiny_batch()
    a, _ = loss_fn(params, batch, jax.random.key(0))
    np.testing.assert_array_equal(a, loss_fn(params, batch, jax.random.key(0))[0])
    assert a != loss_fn(params, batch, jax.random.key(1))[0]
    config.specaugment.num_freq_masks = 0
    config.specaugment.num_time_masks = 0
    plain, _ = ctc_asr.make_loss_fn(graphdef, config)(params, batch, jax.random.key(0))
    evaluation, _ = ctc_asr.make_loss_fn(graphdef, config, train=False)(params, batch, None)
    np.testing.assert_allclose(plain, evaluation, rtol=1e-6)


def test_overfits_a_single_tiny_batch():
    config = tiny_config(d_model=32)
    config.specaugment.num_freq_masks = 0
    config.specaugment.num_time_masks = 0
    graphdef, params = ctc_asr.init(config, jax.random.key(4))
    loss_fn = ctc_asr.make_loss_fn(graphdef, config)
    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(params)
    batch = tiny_batch()

    @jax.jit
    def step(params, opt_state, key):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for i in range(50):
        params, opt_state, loss = step(params, opt_state, jax.random.key(i))
        losses.append(float(loss))
    assert losses[-1] < 0.1 * losses[0], losses[::10]
    logits, mask = ctc_asr.apply(graphdef, params, batch["mel"], batch["mel_mask"])
    ids, lengths = greedy_decode(logits, mask)
    assert ids[0, : lengths[0]].tolist() == [1, 2, 3]
    assert ids[1, : lengths[1]].tolist() == [4, 4]


def test_config_errors_are_clear():
    config = tiny_config()
    del config["conv_kernel"]
    with pytest.raises(KeyError, match="conv_kernel"):
        ctc_asr.init(config, jax.random.key(0))
    plain = dict(tiny_config())
    del plain["specaugment"]
    graphdef, _ = ctc_asr.init(plain, jax.random.key(0))
    with pytest.raises(KeyError, match="specaugment"):
        ctc_asr.make_loss_fn(graphdef, plain)


def test_ctc_upsample_doubles_the_ctc_rate_and_makes_dense_labels_alignable():
    config = tiny_config(ctc_upsample=2)
    graphdef, params = ctc_asr.init(config, jax.random.key(3))
    batch = tiny_batch()
    frames = subsampled_length(40)
    labels = jnp.tile(jnp.array([1, 2], jnp.int32), frames)[None, : frames + 3]  # more labels than encoder frames
    batch = {"mel": batch["mel"][:1], "mel_mask": batch["mel_mask"][:1], "tokens": labels,
             "token_mask": jnp.ones(labels.shape, bool)}
    logits, mask = ctc_asr.apply(graphdef, params, batch["mel"], batch["mel_mask"])
    assert logits.shape == (1, 2 * frames, 5) and int(mask.sum()) == 2 * frames
    assert ctc_asr.output_length(config, 40) == 2 * frames and ctc_asr.output_length(tiny_config(), 40) == frames
    # Frames 2t and 2t+1 come from encoder frame t: the mask repeats, the logits need not.
    _, metrics = ctc_asr.make_loss_fn(graphdef, config)(params, batch, jax.random.key(0))
    assert int(metrics["ctc_infeasible"]) == 0
    plain = tiny_config()
    plain_graphdef, plain_params = ctc_asr.init(plain, jax.random.key(3))
    _, plain_metrics = ctc_asr.make_loss_fn(plain_graphdef, plain)(plain_params, batch, jax.random.key(0))
    assert int(plain_metrics["ctc_infeasible"]) == 1


def test_filler_rows_weigh_nothing_and_are_not_counted_infeasible():
    config = tiny_config()
    graphdef, params = ctc_asr.init(config, jax.random.key(4))
    batch = tiny_batch()
    loss_fn = ctc_asr.make_loss_fn(graphdef, config, train=False)
    loss, metrics = loss_fn(params, batch, None)
    padded = {k: jnp.concatenate([v, jnp.zeros_like(v[:1])]) for k, v in batch.items()}
    padded_loss, padded_metrics = loss_fn(params, padded, None)
    np.testing.assert_allclose(padded_loss, loss, rtol=1e-6)
    assert int(padded_metrics["ctc_infeasible"]) == int(metrics["ctc_infeasible"]) == 0
