"""Losses as pure functions over arrays or callables: ctc (masks, feasibility), flow_matching (OT-CFM, rectified
flow), edm (EDM denoising over a denoiser), consistency (iCT, ECT and consistency distillation), ctm (consistency
trajectory models), duration (Matcha duration and prior), stft (multi-resolution STFT, mel L1), emo (earth mover
distance), squarehead (layer-wise distillation), gan (least-squares GAN, feature matching)."""

from jaxspeech.losses.consistency import (
    cd_loss,
    consistency_distance,
    ect_loss,
    ect_r_of_t,
    ict_discretization,
    ict_loss,
    lognormal_index_probabilities,
    pseudo_huber,
)
from jaxspeech.losses.ctc import ctc_feasible, ctc_loss, ctc_min_frames, ctc_token_mean
from jaxspeech.losses.ctm import ctm_loss, trajectory_function
from jaxspeech.losses.duration import duration_loss, prior_loss
from jaxspeech.losses.edm import edm_loss, edm_weight
from jaxspeech.losses.emo import emo_distance, emo_loss, token_cross_entropy
from jaxspeech.losses.flow_matching import (
    conditional_flow_matching,
    flow_matching_error,
    optimal_transport_path,
    path_sample,
)
from jaxspeech.losses.gan import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from jaxspeech.losses.squarehead import (
    distillation_kl,
    squarehead_distillation_loss,
    squarehead_layer_losses,
    squarehead_loss,
)
from jaxspeech.losses.stft import mel_l1_loss, multi_resolution_stft_loss

__all__ = [
    "cd_loss", "conditional_flow_matching", "consistency_distance", "ctc_feasible", "ctc_loss", "ctc_min_frames",
    "ctc_token_mean",
    "ctm_loss", "discriminator_loss", "distillation_kl", "duration_loss", "ect_loss", "ect_r_of_t", "edm_loss",
    "edm_weight", "emo_distance", "emo_loss", "feature_matching_loss", "flow_matching_error",
    "generator_adversarial_loss", "ict_discretization", "ict_loss", "lognormal_index_probabilities", "mel_l1_loss",
    "multi_resolution_stft_loss", "optimal_transport_path", "path_sample", "prior_loss", "pseudo_huber",
    "squarehead_distillation_loss", "squarehead_layer_losses", "squarehead_loss", "token_cross_entropy",
    "trajectory_function",
]
