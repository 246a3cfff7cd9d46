"""An nnx ``GraphDef`` as a jit static argument, hashed once.

``jax.jit`` hashes its static arguments on every call, and a GraphDef's hash walks the whole module
tree: about 8 ms for the tiny TTS on 2 CPU cores, more than one decoder pass at batch 1. Inference
objects (a synthesizer, a transcriber) wrap their graphdef once with :func:`hashed` and pass the
wrapper; the jitted functions take either form and unwrap it with :func:`plain`. Calling them with a
plain GraphDef stays correct, it only pays the hash each call.
"""

from __future__ import annotations

from flax import nnx


class HashedGraphDef:
    """A GraphDef with its hash computed at construction. Equal to another wrapper of an equal GraphDef."""

    __slots__ = ("graphdef", "_hash")

    def __init__(self, graphdef: nnx.GraphDef):
        self.graphdef = graphdef
        self._hash = hash(graphdef)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return (isinstance(other, HashedGraphDef) and self._hash == other._hash
                and (self.graphdef is other.graphdef or self.graphdef == other.graphdef))

    def __repr__(self) -> str:
        return f"HashedGraphDef({self._hash:#x})"


def hashed(graphdef: nnx.GraphDef | HashedGraphDef) -> HashedGraphDef:
    """``graphdef`` wrapped for cheap jit cache lookups (a wrapper is returned as is)."""
    return graphdef if isinstance(graphdef, HashedGraphDef) else HashedGraphDef(graphdef)


def plain(graphdef: nnx.GraphDef | HashedGraphDef) -> nnx.GraphDef:
    """The GraphDef inside a wrapper (a plain GraphDef is returned as is)."""
    return graphdef.graphdef if isinstance(graphdef, HashedGraphDef) else graphdef
