"""UniVoice's row layout and dual mask, and the model's forward pass over batches that mix ASR and TTS rows."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxspeech.data.packing import plan_packing
from jaxspeech.kernels.attention_mask import dense_mask
from jaxspeech.models import llm
from jaxspeech.models.univoice import layout as row
from jaxspeech.models.univoice.config import UniVoiceConfig
from jaxspeech.models.univoice.model import Rows, apply, init, speech_length

F = 16
CONFIG = UniVoiceConfig(llm=llm.llm_config("tiny", vocab_size=40, num_layers=2), n_mels=F, encoder_dim=32,
                        encoder_layers=1, encoder_heads=2, encoder_conv_kernel=5, encoder_subsampling_channels=4)


def test_assemble_packs_segments_without_gaps_and_gather_inverts_it():
    lengths = jnp.array([[3, 2, 0, 0], [0, 4, 1, 5]])  # an ASR row, a TTS row
    capacities = (3, 4, 1, 6)
    layout = row.row_layout(lengths, capacities, length=11)
    pieces = tuple(jnp.full((2, c, 1), 10.0 * (k + 1)) + jnp.arange(c)[None, :, None]
                   for k, c in enumerate(capacities))
    sequence = np.asarray(row.assemble(layout, pieces))[..., 0]
    np.testing.assert_array_equal(sequence[0], [10, 11, 12, 20, 21, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(sequence[1], [20, 21, 22, 23, 30, 40, 41, 42, 43, 44, 0])
    frames = np.asarray(layout.gather(jnp.asarray(sequence)[..., None], "frames"))[1, :5, 0]
    np.testing.assert_array_equal(frames, [40, 41, 42, 43, 44])


def test_dual_mask_is_causal_with_the_frames_bidirectional():
    layout = row.row_layout(jnp.array([[3, 2, 0, 0], [0, 4, 1, 5]]), (3, 4, 1, 6), length=11)
    allowed = np.asarray(dense_mask(layout.mask(), 2, 11, 11))
    causal = np.tril(np.ones((11, 11), bool))
    np.testing.assert_array_equal(allowed[0], causal & (np.arange(11) < 5)[None, :])  # ASR: causal, padding off
    tts = allowed[1]
    span = np.zeros(11, bool)
    span[5:10] = True
    np.testing.assert_array_equal(tts[:5], causal[:5] & (np.arange(11) < 10))  # text and time token: causal
    assert tts[5:10, 5:10].all()  # frames see every frame, later ones too
    assert tts[5:10, :5].all() and not tts[5:10, 10].any()  # and the whole prefix, never the padding
    assert not tts[:5, 5:10].any()  # the text never sees the frames


def _asr_rows(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    features = jnp.asarray(rng.normal(size=(batch, 40, F)), jnp.float32)
    return dict(text=jnp.asarray(rng.integers(1, 40, (batch, 7))), text_lengths=jnp.array([7, 4])[:batch],
                features=features, feature_lengths=jnp.array([40, 29])[:batch])  # fmt: skip


def _tts_rows(batch=2, seed=1):
    rng = np.random.default_rng(seed)
    frames = lambda: jnp.asarray(rng.normal(size=(batch, 12, F)), jnp.float32)  # noqa: E731
    return dict(text=jnp.asarray(rng.integers(1, 40, (batch, 7))), text_lengths=jnp.array([6, 0])[:batch],
                x_t=frames(), cond=frames(), frame_lengths=jnp.array([12, 9])[:batch],
                t=jnp.array([0.3, 0.8])[:batch])  # fmt: skip


def _rows(batch, *, text, text_lengths, features=None, feature_lengths=None, x_t=None, cond=None,
          frame_lengths=None, t=None):
    zeros = jnp.zeros((batch,), jnp.int32)
    return Rows(text, text_lengths, features, zeros if feature_lengths is None else feature_lengths, x_t, cond,
                zeros if frame_lengths is None else frame_lengths, jnp.zeros((batch,)) if t is None else t)


@pytest.fixture(scope="module")
def model():
    graphdef, params = init(CONFIG, jax.random.key(0))
    # non-zero output layers, so that the velocity depends on the LLM's states
    params["out"]["kernel"] = jax.random.normal(jax.random.key(1), params["out"]["kernel"].shape) * 0.1
    return graphdef, params


def test_a_mixed_batch_gives_each_row_what_it_gives_alone(model):
    graphdef, params = model
    asr, tts = _asr_rows(), _tts_rows()
    alone_asr = apply(graphdef, params, _rows(2, **asr))
    alone_tts = apply(graphdef, params, _rows(2, **tts))
    mixed = dict(text=jnp.concatenate([asr["text"], tts["text"]]),
                 text_lengths=jnp.concatenate([asr["text_lengths"], tts["text_lengths"]]),
                 features=jnp.concatenate([asr["features"], jnp.zeros_like(asr["features"])]),
                 feature_lengths=jnp.array([40, 29, 0, 0]),
                 x_t=jnp.concatenate([jnp.zeros_like(tts["x_t"]), tts["x_t"]]),
                 cond=jnp.concatenate([jnp.zeros_like(tts["cond"]), tts["cond"]]),
                 frame_lengths=jnp.array([0, 0, 12, 9]), t=jnp.array([0.0, 0.0, 0.3, 0.8]))  # fmt: skip
    out = apply(graphdef, params, _rows(4, **mixed))
    for i, length in enumerate([7, 4]):
        np.testing.assert_allclose(out.text_logits[i, :length], alone_asr.text_logits[i, :length], atol=1e-4)
    for i, length in enumerate([12, 9]):
        np.testing.assert_allclose(out.velocity[2 + i, :length], alone_tts.velocity[i, :length], atol=1e-4)
    assert alone_asr.velocity is None
    assert np.abs(np.asarray(alone_tts.velocity)).max() > 1e-3


def _mixed_rows():
    """Two ASR rows, an empty batch slot and two TTS rows."""
    asr, tts = _asr_rows(), _tts_rows()
    return _rows(5, text=jnp.concatenate([asr["text"], jnp.zeros_like(asr["text"][:1]), tts["text"]]),
                 text_lengths=jnp.array([7, 4, 0, 6, 0]),
                 features=jnp.concatenate([asr["features"], jnp.zeros((3,) + asr["features"].shape[1:])]),
                 feature_lengths=jnp.array([40, 29, 0, 0, 0]),
                 x_t=jnp.concatenate([jnp.zeros((3,) + tts["x_t"].shape[1:]), tts["x_t"]]),
                 cond=jnp.concatenate([jnp.zeros((3,) + tts["cond"].shape[1:]), tts["cond"]]),
                 frame_lengths=jnp.array([0, 0, 0, 12, 9]), t=jnp.array([0.0, 0.0, 0.0, 0.3, 0.8]))  # fmt: skip


def test_packed_rows_give_what_the_rows_give_unpacked(model):
    """Packing shares LLM rows between rows (segment ids, per-row positions, one dual span per TTS row)
    and changes no output; the plan uses fewer, fully used rows."""
    graphdef, params = model
    rows = _mixed_rows()
    unpacked = apply(graphdef, params, rows)
    totals = np.asarray(unpacked.layout.total)
    plan = plan_packing(totals, unpacked.layout.length)
    assert plan["pack_owner"].shape[0] < 4
    packing = row.Packing(*(jnp.asarray(plan[k]) for k in ("pack_row", "pack_offset", "pack_owner")))
    packed = apply(graphdef, params, rows._replace(packing=packing))
    for i in (0, 1):
        np.testing.assert_allclose(packed.text_logits[i, :int(rows.text_lengths[i])],
                                   unpacked.text_logits[i, :int(rows.text_lengths[i])], atol=1e-5)  # fmt: skip
    for i in (3, 4):
        length = int(rows.frame_lengths[i])
        np.testing.assert_allclose(packed.velocity[i, :length], unpacked.velocity[i, :length], atol=1e-5)
    view = row.packed_rows(unpacked.layout, packing)
    np.testing.assert_array_equal(np.asarray(view.valid).sum(), totals.sum())
    allowed = np.asarray(dense_mask(view.mask(), *plan["pack_owner"].shape, plan["pack_owner"].shape[1]))
    owner, valid = plan["pack_owner"], np.asarray(view.valid)
    assert not np.any(allowed & valid[:, :, None] & (owner[:, :, None] != owner[:, None, :]))  # never across rows


def test_frame_text_gives_each_frame_the_token_an_even_rate_puts_there():
    graphdef, params = init(dataclasses.replace(CONFIG, frame_text=True), jax.random.key(0))
    module = nnx.merge(graphdef, params)
    table = np.asarray(module.frame_text.embedding[...])
    text = jnp.array([[5, 6, 7, 8], [1, 2, 0, 0], [3, 0, 0, 0]])
    embedded = np.asarray(module.frame_text_embeddings(text, jnp.array([4, 0, 1]), jnp.array([5, 3, 2]), 6))
    # frame i of 5 over 4 tokens: floor((i + 1/2) 4 / 5) = 0, 1, 2, 2, 3; nothing past the frames
    np.testing.assert_array_equal(embedded[0], np.concatenate([table[[5, 6, 7, 7, 8]], np.zeros((1, table.shape[1]))]))
    np.testing.assert_array_equal(embedded[1], 0.0)  # text dropped
    np.testing.assert_array_equal(embedded[2, :2], table[[3, 3]])


def test_frame_text_changes_tts_rows_with_text_alone(model):
    """The frame text is the only new part: zeroed, the model is the plain one; learnt, it changes the
    velocity of TTS rows that have text and nothing else."""
    graphdef, params = model
    text_graphdef, text_params = init(dataclasses.replace(CONFIG, frame_text=True), jax.random.key(0))
    for name in params:
        text_params[name] = params[name]
    rows = _mixed_rows()
    plain = apply(graphdef, params, rows)
    table = text_params["frame_text"]["embedding"]
    text_params["frame_text"]["embedding"] = jnp.zeros_like(table)
    np.testing.assert_allclose(apply(text_graphdef, text_params, rows).velocity, plain.velocity, atol=1e-6)
    text_params["frame_text"]["embedding"] = table
    learnt = apply(text_graphdef, text_params, rows)
    np.testing.assert_allclose(learnt.text_logits, plain.text_logits, atol=1e-5)  # the text never sees the frames
    assert np.abs(np.asarray(learnt.velocity[3, :12] - plain.velocity[3, :12])).max() > 1e-4
    np.testing.assert_allclose(learnt.velocity[4, :9], plain.velocity[4, :9], atol=1e-6)  # no text


def test_frame_text_blocks_mix_only_nearby_frames_of_the_row():
    """Two ConvNeXt blocks of kernel 7 see 6 frames each way: changing the token of frames 30-39 leaves frames
    0-23 as they were; padding and rows without text stay zero."""
    graphdef, params = init(dataclasses.replace(CONFIG, frame_text=True, frame_text_blocks=2), jax.random.key(0))
    module = nnx.merge(graphdef, params)
    text = jnp.array([[5, 6, 7, 8], [5, 6, 7, 9], [1, 0, 0, 0]])
    embedded = np.asarray(module.frame_text_embeddings(text, jnp.array([4, 4, 0]), jnp.array([40, 40, 40]), 48))
    np.testing.assert_allclose(embedded[0, :24], embedded[1, :24], atol=1e-6)
    assert np.abs(embedded[0, 24:40] - embedded[1, 24:40]).max() > 1e-4
    np.testing.assert_array_equal(embedded[:, 40:], 0.0)
    np.testing.assert_array_equal(embedded[2], 0.0)
    with pytest.raises(ValueError, match="set frame_text=True"):
        dataclasses.replace(CONFIG, frame_text_blocks=2)


def test_frame_text_needs_the_infilling_head():
    with pytest.raises(ValueError, match="frame_text needs tts_head='infill'"):
        dataclasses.replace(CONFIG, frame_text=True, tts_head="flow_omni")


def test_frames_attend_both_ways_and_text_never_sees_them(model):
    graphdef, params = model
    tts = _tts_rows()
    out = apply(graphdef, params, _rows(2, **tts))
    changed = apply(graphdef, params, _rows(2, **{**tts, "x_t": tts["x_t"].at[:, 8:].add(1.0)}))
    assert np.abs(np.asarray(changed.velocity[0, :8] - out.velocity[0, :8])).max() > 1e-4  # earlier frames see later
    np.testing.assert_allclose(changed.text_logits[0, :6], out.text_logits[0, :6], atol=1e-6)  # row 1 has no text
    padded = apply(graphdef, params, _rows(2, **{**tts, "x_t": tts["x_t"].at[1, 9:].set(1e3)}))
    np.testing.assert_allclose(padded.velocity[1, :9], out.velocity[1, :9], atol=1e-5)  # padding never read


def test_speech_length_counts_the_embeddings_of_the_adapter(model):
    graphdef, params = model
    asr = _asr_rows()
    out = apply(graphdef, params, _rows(2, **asr))
    np.testing.assert_array_equal(out.layout.offsets[:, 1], speech_length(CONFIG, np.array([40, 29])))
