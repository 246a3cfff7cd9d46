import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxspeech.models.hashed_graph import HashedGraphDef, hashed, plain
from jaxspeech.nn import MLPField


def _split(seed):
    return nnx.split(MLPField(2, width=16, num_blocks=2, rngs=nnx.Rngs(seed)), nnx.Param)


def test_hashed_is_idempotent_and_plain_unwraps():
    graphdef, _ = _split(0)
    wrapped = hashed(graphdef)
    assert hashed(wrapped) is wrapped and plain(wrapped) is graphdef and plain(graphdef) is graphdef
    assert hash(wrapped) == hash(graphdef)
    # Wrappers of equal graphdefs (same architecture, other weights) are equal: one jit cache entry.
    other, _ = _split(1)
    assert hashed(other) == wrapped and hashed(other) != graphdef


def test_jit_reuses_one_compilation_and_never_rehashes_the_graphdef(monkeypatch):
    graphdef, params = _split(0)
    traces = []

    @functools.partial(jax.jit, static_argnames="graphdef")
    def apply(params, x, *, graphdef):
        traces.append(1)
        return nnx.merge(plain(graphdef), params)(x, jnp.zeros(x.shape[:1]))

    x = jnp.ones((3, 2))
    expected = apply(params, x, graphdef=graphdef)
    wrapped = hashed(graphdef)
    calls = []
    original = type(graphdef).__hash__
    monkeypatch.setattr(type(graphdef), "__hash__", lambda self: calls.append(1) or original(self))
    for _ in range(3):
        np.testing.assert_array_equal(apply(params, x, graphdef=wrapped), expected)
    np.testing.assert_array_equal(apply(params, x, graphdef=hashed(_split(1)[0])), expected)
    assert calls == [1]  # only the second wrapper's construction hashed a graphdef
    assert len(traces) == 2  # the plain graphdef, then every wrapper through one cache entry
    assert isinstance(wrapped, HashedGraphDef)
