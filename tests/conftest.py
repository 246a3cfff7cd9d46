import os
import tempfile

import pytest

# numba (through librosa, a test-only reference) writes each @guvectorize(cache=True) kernel as two cache
# files without atomicity between them; xdist workers filling one cold cache at once can load a mixed
# pair and segfault (numba/numba#10128; seen here in librosa.yin on a fresh CI venv). Each test process
# gets its own cache directory. numba reads the variable when it is first imported, after this file.
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxspeech-numba-")

# Most of the slow tests' time is XLA compiling the same tiny train steps again (a resumed run and
# the straight run it is compared with, the CLI and the recipe tests). One persistent compilation
# cache per test session, shared by the xdist workers (same run id), compiles each once. A maximum
# size turns on JAX's file lock around reads and writes, so no worker reads a half-written entry.
# A cache the caller configured (JAX_COMPILATION_CACHE_DIR) is left alone.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import jax

    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    cache = (os.path.join(tempfile.gettempdir(), f"jaxspeech-xla-{run}") if run
             else tempfile.mkdtemp(prefix="jaxspeech-xla-"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_compilation_cache_max_size", 4 << 30)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A 48-utterance eSpeak corpus (all four splits), built once per test session."""
    from jaxspeech.data.corpus import build_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, size=48, seed=0, workers=2)
    return out
