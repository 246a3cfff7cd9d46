"""Samplers and decoders over callables: ode (Euler/midpoint/Heun/RK4, CFG, sway), edm (EDM Euler/Heun over a
denoiser), consistency (one-step and multistep over a consistency function, CTM gamma-sampling over a trajectory
function), autoregressive (greedy, sampling, beam search over step(tokens, cache), optionally joint with a
prefix scorer), ctc_decoding (greedy and prefix beam search), ctc_prefix_score (CTC prefix scores for joint
CTC/attention decoding)."""

from jaxspeech.samplers import autoregressive
from jaxspeech.samplers.consistency import check_consistency_levels, sample_consistency, sample_gamma
from jaxspeech.samplers.ctc_decoding import beam_search_batch, greedy_decode, prefix_beam_search
from jaxspeech.samplers.ctc_prefix_score import CTCPrefixScorer, ctc_prefix_scorer
from jaxspeech.samplers.edm import edm_evaluations, probability_flow_step, sample_edm
from jaxspeech.samplers.ode import classifier_free_guidance, function_evaluations, sample_ode, sway_time_grid

__all__ = [
    "CTCPrefixScorer", "autoregressive", "beam_search_batch", "check_consistency_levels", "classifier_free_guidance",
    "ctc_prefix_scorer", "edm_evaluations", "function_evaluations", "greedy_decode", "prefix_beam_search",
    "probability_flow_step", "sample_consistency", "sample_edm", "sample_gamma", "sample_ode", "sway_time_grid",
]
