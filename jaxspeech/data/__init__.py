"""Speech data: the embedded eSpeak NG corpus, manifests, corpus readers and input pipelines.

Submodules are imported explicitly (``from jaxspeech.data import corpus``) so that reading a
manifest does not pull in JAX or grain.
"""
