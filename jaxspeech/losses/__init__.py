"""Losses as pure functions over arrays or callables: ctc (masks, feasibility), flow_matching (OT-CFM, rectified
flow), duration (Matcha duration and prior), stft (multi-resolution STFT, mel L1), emo (earth mover distance), squarehead
(layer-wise distillation)."""
