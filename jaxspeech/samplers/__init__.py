"""Samplers and decoders (ctc_decoding: greedy and prefix beam search)."""
