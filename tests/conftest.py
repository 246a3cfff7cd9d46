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
# cache per test session compiles each once: set here, before JAX is imported, in the environment,
# so that the xdist workers (started by this process) and the CLI tests' subprocesses share it. A
# maximum size turns on JAX's file lock around reads and writes, so no process reads a half-written
# entry. A cache directory the caller configured is used as it is (still locked).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxspeech-xla-")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 << 30))

# The rest is mostly LLVM optimising programs that then run on tiny shapes for a few steps: the tests compile
# at XLA's backend optimisation level 0 (the same HLO, the same maths; compiled code runs slower). Measured
# on the whole suite: CI's pytest 1358 s -> 789 s on an idle 2-core machine (12% less beside a training; the
# few tests that compute more than they compile up to twice as long). experiments/ compile as users do;
# JAX_DISABLE_MOST_OPTIMIZATIONS=false runs the tests fully optimised.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "true")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A 48-utterance eSpeak corpus (all four splits), built once per test session."""
    from jaxspeech.data.corpus import build_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, size=48, seed=0, workers=2)
    return out
