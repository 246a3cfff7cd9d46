"""Losses as pure functions over arrays or callables (ctc: CTC with masks and feasibility)."""
