"""CTC prefix scores for joint CTC/attention decoding (Watanabe et al. 2017, "Hybrid CTC/Attention
Architecture for End-to-End Speech Recognition", Algorithm 2; ESPnet's ``CTCPrefixScoreTH``).

The prefix score psi(h) of a label sequence h is the CTC probability that the labelling of the
utterance *starts with* h (sums over every path whose collapse has h as a prefix); psi(h + eos) is
the probability that the labelling *is* h. An autoregressive decoder's beam search adds
``weight x (log psi(g + c) - log psi(g))`` to its own log-probability of token c after hypothesis g,
so the increments telescope to ``weight x log p_ctc(h | x)`` on a finished hypothesis: the CTC
scores keep the decoder's search on what the audio supports (``autoregressive.beam_search``'s
``scorer``).

Per hypothesis g the state holds the forward variables r_t^n(g), r_t^b(g) for t = 0..T (paths over
frames 1..t collapsing to g, ending in a label / in blank), with r_0^b(empty) = 1 and every other
r_0 = 0, so the first label needs no special case. Extending g by c:
    phi_{t-1} = r_{t-1}^b(g) + (r_{t-1}^n(g) unless c == last(g))
    r_t^n(h) = (r_{t-1}^n(h) + phi_{t-1}) x_t(c),  r_t^b(h) = (r_{t-1}^b(h) + r_{t-1}^n(h)) x_t(blank)
    psi(h) = sum_t phi_{t-1} x_t(c)
all in log space. Frames past a row's length are certain blanks, which leaves every total unchanged.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CTCPrefixState:
    """Per hypothesis [B, K, ...]: r_label, r_blank [B, K, T+1] log forward variables (frames 0..T);
    log_psi [B, K] log prefix score; last [B, K] int32 last label (-1 for the empty prefix)."""

    r_label: jax.Array
    r_blank: jax.Array
    log_psi: jax.Array
    last: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CTCPrefixScorer:
    """A ``beam_search`` scorer over CTC log-probabilities. Build it with ``ctc_prefix_scorer``.

    log_probs: [B, T, V] per-frame log-probabilities, frames past a row's length set to a certain
    blank. blank_id: the CTC blank; eos_id: the decoder's end token (its prefix score is the
    probability of the whole labelling). They may be the same id (a blank that is never a label).
    """

    log_probs: jax.Array
    blank_id: int = dataclasses.field(metadata=dict(static=True))
    eos_id: int = dataclasses.field(metadata=dict(static=True))

    def init(self, beams: int) -> CTCPrefixState:
        """The empty prefix for every beam: leaves [B, beams, ...]."""
        batch, frames, _ = self.log_probs.shape
        blank_run = jnp.concatenate([jnp.zeros((batch, 1)), jnp.cumsum(self.log_probs[:, :, self.blank_id], 1)], 1)
        tile = lambda x: jnp.repeat(x[:, None], beams, axis=1)  # noqa: E731
        return CTCPrefixState(r_label=jnp.full((batch, beams, frames + 1), -jnp.inf), r_blank=tile(blank_run),
                              log_psi=jnp.zeros((batch, beams)), last=jnp.full((batch, beams), -1, jnp.int32))

    def extend(self, state: CTCPrefixState, tokens: jax.Array) -> tuple[jax.Array, CTCPrefixState]:
        """Scores hypotheses g [B, K] extended by candidate tokens [B, K, M]: (log psi(g + c) - log psi(g)
        [B, K, M] (-inf where g + c is impossible), the extended hypotheses' states, leaves [B, K, M, ...])."""
        batch, beams, _ = tokens.shape
        chex.assert_shape(state.log_psi, (batch, beams))
        # x_t(c) for each candidate, time first: [T, B, K, M]; x_t(blank): [T, B, 1, 1].
        x_token = jnp.moveaxis(self.log_probs[jnp.arange(batch)[:, None, None], :, tokens], -1, 0)
        x_blank = jnp.moveaxis(self.log_probs[:, :, self.blank_id], 1, 0)[:, :, None, None]
        repeat = tokens == state.last[:, :, None]
        r_label = jnp.where(repeat[..., None], -jnp.inf, state.r_label[:, :, None, :])
        phi = jnp.moveaxis(jnp.logaddexp(state.r_blank[:, :, None, :], r_label), -1, 0)[:-1]  # phi_0..phi_{T-1}

        def frame(carry, inputs):
            label, blank = carry
            phi_prev, x_c, x_b = inputs
            label_t = jnp.logaddexp(label, phi_prev) + x_c
            blank_t = jnp.logaddexp(blank, label) + x_b
            return (label_t, blank_t), (label_t, blank_t)

        start = jnp.full(tokens.shape, -jnp.inf)
        _, (labels, blanks) = jax.lax.scan(frame, (start, start), (phi, x_token, x_blank))
        log_psi = jax.nn.logsumexp(phi + x_token, axis=0)
        whole = jnp.logaddexp(state.r_label[:, :, -1], state.r_blank[:, :, -1])[:, :, None]
        log_psi = jnp.where(tokens == self.eos_id, whole, jnp.where(tokens == self.blank_id, -jnp.inf, log_psi))
        prior = state.log_psi[:, :, None]
        increment = jnp.where(log_psi > -jnp.inf, log_psi - jnp.where(prior > -jnp.inf, prior, 0.0), -jnp.inf)
        first = jnp.full((1, *tokens.shape), -jnp.inf)
        extended = CTCPrefixState(r_label=jnp.moveaxis(jnp.concatenate([first, labels]), 0, -1),
                                  r_blank=jnp.moveaxis(jnp.concatenate([first, blanks]), 0, -1),
                                  log_psi=log_psi, last=tokens.astype(jnp.int32))  # fmt: skip
        return increment, extended


def ctc_prefix_scorer(logits: jax.Array, lengths: jax.Array, *, blank_id: int, eos_id: int) -> CTCPrefixScorer:
    """A scorer over CTC ``logits`` [B, T, V] (or log-probabilities) with ``lengths`` [B] valid frames."""
    chex.assert_rank(logits, 3)
    chex.assert_shape(lengths, logits.shape[:1])
    vocab = logits.shape[-1]
    for name, value in (("blank_id", blank_id), ("eos_id", eos_id)):
        if not 0 <= value < vocab:
            raise ValueError(f"{name} {value} outside the vocabulary of {vocab}")
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    valid = jnp.arange(logits.shape[1])[None, :] < lengths[:, None]
    certain_blank = jnp.where(jnp.arange(vocab) == blank_id, 0.0, -jnp.inf)
    return CTCPrefixScorer(jnp.where(valid[..., None], log_probs, certain_blank), blank_id=blank_id, eos_id=eos_id)
