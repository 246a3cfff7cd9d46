"""Evaluation metrics: error rates, and (later) MCD, F0 and break statistics, RTF."""

from jaxspeech.eval.error_rate import error_rates

__all__ = ["error_rates"]
