"""Samplers and decoders over callables: ode (Euler/midpoint/Heun/RK4, CFG, sway), autoregressive (greedy,
sampling, beam search over step(tokens, cache)), ctc_decoding (greedy and prefix beam search)."""
