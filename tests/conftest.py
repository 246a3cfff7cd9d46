import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A 48-utterance eSpeak corpus (all four splits), built once per test session."""
    from jaxspeech.data.corpus import build_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, size=48, seed=0, workers=2)
    return out
