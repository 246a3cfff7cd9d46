"""make_mesh and param_shardings rules (multi-device meshes are abstract here; the real
8-device mesh runs in test_train_subprocess.py)."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

from jaxspeech.train import batch_sharding, make_mesh, param_shardings, put_batch
from jaxspeech.train.mesh import path_str

MESH = AbstractMesh((4, 2), ("data", "fsdp"))
PARAMS = {
    "encoder": {
        "layers": [{"attn": {"kernel": jnp.zeros((8, 12))}, "mlp": {"kernel": jnp.zeros((6, 8))}}],
        "norm": {"scale": jnp.zeros((6,))},
    },
    "head": {"kernel": jnp.zeros((6, 5)), "bias": jnp.zeros((5,))},
}


def test_make_mesh_fills_wildcard_and_batch_axes():
    mesh = make_mesh({"data": -1})
    assert dict(mesh.shape) == {"data": jax.device_count(), "fsdp": 1}
    assert batch_sharding(mesh).spec == P(("data", "fsdp"))
    with pytest.raises(ValueError, match="needs 2 devices"):
        make_mesh({"data": 2, "fsdp": 1}, devices=jax.devices()[:1])
    with pytest.raises(ValueError, match="at most one"):
        make_mesh({"data": -1, "fsdp": -1})
    with pytest.raises(ValueError, match="positive ints"):
        make_mesh({"data": 0})


def test_rules_first_match_wins_and_default_is_replicated():
    rules = [
        (r"layers/\d+/attn/kernel", ("fsdp", "data")),
        (r"kernel$", (None, "fsdp")),
        (r"attn", ("data",)),  # never reached for attn/kernel: an earlier rule matched
    ]
    shardings = param_shardings(PARAMS, rules, MESH)
    assert shardings["encoder"]["layers"][0]["attn"]["kernel"].spec == P("fsdp", "data")
    assert shardings["encoder"]["layers"][0]["mlp"]["kernel"].spec == P(None, "fsdp")
    assert shardings["encoder"]["norm"]["scale"].spec == P()
    assert shardings["head"]["bias"].spec == P()
    assert shardings["head"]["kernel"].spec == P(None, None)  # 5 % 2: unsplit


def test_indivisible_dim_falls_back_to_unsplit_with_one_warning(caplog):
    rules = [(r"kernel", (None, ("data", "fsdp")))]  # 8-way on dim 1
    with caplog.at_level(logging.WARNING, logger="jaxspeech.train.mesh"):
        shardings = param_shardings(PARAMS, rules, MESH)
    assert shardings["encoder"]["layers"][0]["mlp"]["kernel"].spec == P(None, ("data", "fsdp"))
    assert shardings["encoder"]["layers"][0]["attn"]["kernel"].spec == P(None, None)  # 12 % 8
    assert shardings["head"]["kernel"].spec == P(None, None)  # 5 % 8
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "encoder/layers/0/attn/kernel dim 1" in warnings[0].message and "head/kernel dim 1" in warnings[0].message


def test_bad_rules_raise_clear_errors():
    with pytest.raises(ValueError, match="'tensor'.*not in the mesh"):
        param_shardings(PARAMS, [("kernel", ("tensor",))], MESH)
    with pytest.raises(ValueError, match="head/bias.*more entries than"):
        param_shardings(PARAMS, [("bias", ("data", None))], MESH)


def test_path_str_joins_dict_list_and_attribute_keys():
    paths = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(PARAMS)[0]]
    assert "encoder/layers/0/attn/kernel" in paths and "head/bias" in paths


def test_put_batch_assembles_the_global_batch_on_one_process():
    mesh = make_mesh({"data": -1})
    local = {"x": np.arange(12, dtype=np.float32).reshape(4, 3), "n": np.arange(4)}
    placed = put_batch(local, batch_sharding(mesh))
    assert placed["x"].sharding == batch_sharding(mesh)
    np.testing.assert_array_equal(placed["x"], local["x"])
    np.testing.assert_array_equal(placed["n"], local["n"])
    packed = put_batch({"x": np.zeros((4, 3)), "owner": np.zeros((2, 5))}, batch_sharding(mesh))  # packed rows
    assert packed["owner"].shape == (2, 5) and packed["owner"].sharding == batch_sharding(mesh)
    with pytest.raises(ValueError, match="need a leading"):
        put_batch({"x": np.zeros((4, 3)), "n": np.zeros(())}, batch_sharding(mesh))
