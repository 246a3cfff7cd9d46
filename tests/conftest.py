import os
import tempfile

import pytest

# numba (through librosa, a test-only reference) writes each @guvectorize(cache=True) kernel as two cache
# files without atomicity between them; xdist workers filling one cold cache at once can load a mixed
# pair and segfault (numba/numba#10128; seen here in librosa.yin on a fresh CI venv). Each test process
# gets its own cache directory. numba reads the variable when it is first imported, after this file.
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxspeech-numba-")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A 48-utterance eSpeak corpus (all four splits), built once per test session."""
    from jaxspeech.data.corpus import build_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, size=48, seed=0, workers=2)
    return out
