import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxspeech.nn.timestep import TimestepEmbedding, sinusoidal_embedding


def test_sinusoidal_embedding_closed_form():
    t = jnp.array([0.0, 0.25, 1.0])
    out = np.asarray(sinusoidal_embedding(t, 8))
    freqs = np.exp(-math.log(10000.0) * np.arange(4) / 3)  # Matcha: log(10000) / (half - 1)
    angles = 1000.0 * np.asarray(t)[:, None] * freqs
    np.testing.assert_allclose(out, np.concatenate([np.sin(angles), np.cos(angles)], -1), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(out[0], [0, 0, 0, 0, 1, 1, 1, 1])


def test_timestep_embedding_shape_and_bad_dim():
    assert TimestepEmbedding(8, 12, rngs=nnx.Rngs(0))(jnp.array([0.1, 0.9])).shape == (2, 12)
    with pytest.raises(ValueError, match="even dim"):
        sinusoidal_embedding(jnp.zeros(2), 5)
