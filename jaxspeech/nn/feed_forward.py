"""The pre-LN feed-forward block of Conformer and transformer layers."""

from __future__ import annotations

import jax
from flax import nnx

from jaxspeech.nn.dropout import dropout


class FeedForward(nnx.Module):
    """Pre-LN FFN: LayerNorm -> Linear(d, ff_mult*d) -> SiLU -> dropout -> Linear(ff_mult*d, d) -> dropout."""

    def __init__(self, d_model: int, ff_mult: int, dropout: float, *, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.up = nnx.Linear(d_model, ff_mult * d_model, rngs=rngs)
        self.down = nnx.Linear(ff_mult * d_model, d_model, rngs=rngs)
        self.drop_hidden = nnx.Dropout(dropout)
        self.drop_out = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        h = dropout(self.drop_hidden, jax.nn.silu(self.up(self.norm(x))), rngs)
        return dropout(self.drop_out, self.down(h), rngs)
