"""Assembled models, each exposing init / apply / loss functions (ctc_asr: Conformer CTC)."""
