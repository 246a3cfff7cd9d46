import dataclasses
import math

import jax
import pytest

from jaxspeech.models.whisper import (
    LANGUAGE_CODES,
    SpecialTokens,
    WhisperConfig,
    abstract_init,
    decoder_prefix,
    special_tokens,
    whisper_config,
)


def parameter_count(config):
    _, params = abstract_init(config)
    return sum(math.prod(x.shape) for x in jax.tree.leaves(params))


def transformers_parameter_count(config):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.WhisperConfig(**config.to_transformers())
    assert WhisperConfig.from_transformers(hf_config.to_dict()) == config
    with torch.device("meta"):  # shapes only: large-v3 would need 6 GB otherwise
        model = transformers.WhisperForConditionalGeneration(hf_config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", ["tiny", "base.en", "large-v3-turbo"])
def test_parameters_match_transformers_models(size):
    # One size per structural variant (multilingual, English-only, 4-layer decoder) keeps this quick.
    config = whisper_config(size)
    assert parameter_count(config) == transformers_parameter_count(config)


def test_published_parameter_counts():
    # Whisper paper, table 1 (rounded up): 39M, 74M, 244M, 769M, 1550M; large-v3 shares large's shapes.
    published = {"tiny": 39, "base": 74, "small": 244, "medium": 769, "large": 1550, "large-v2": 1550,
                 "large-v3": 1550, "tiny.en": 39, "base.en": 74, "small.en": 244, "medium.en": 769}  # fmt: skip
    for size, millions in published.items():
        count = transformers_parameter_count(whisper_config(size)) / 1e6
        assert 0 < millions - count < 0.04 * millions, (size, count)


def test_special_tokens_of_the_published_vocabularies():
    multi = special_tokens(whisper_config("tiny"))
    assert (multi.eot, multi.sot, multi.language("en"), multi.translate, multi.transcribe) == (
        50257, 50258, 50259, 50358, 50359)  # fmt: skip
    assert (multi.start_of_prev, multi.no_speech, multi.no_timestamps, multi.timestamp_begin) == (
        50361, 50362, 50363, 50364)  # fmt: skip
    assert len(multi.languages) == 99 and multi.multilingual
    v3 = special_tokens(whisper_config("large-v3"))
    assert (v3.language("yue"), v3.translate, v3.transcribe, v3.no_timestamps, v3.timestamp_begin) == (
        50358, 50359, 50360, 50364, 50365)  # fmt: skip
    english = special_tokens(whisper_config("base.en"))
    assert (english.eot, english.sot, english.transcribe, english.no_timestamps, english.timestamp_begin) == (
        50256, 50257, 50358, 50362, 50363)  # fmt: skip
    assert not english.multilingual
    with pytest.raises(ValueError, match="not a Whisper vocabulary layout"):
        special_tokens(whisper_config("tiny", vocab_size=50300))


def test_language_codes_match_transformers():
    tokenization = pytest.importorskip("transformers.models.whisper.tokenization_whisper")
    assert LANGUAGE_CODES == tuple(tokenization.LANGUAGES)


def test_decoder_prefix():
    multi = special_tokens(whisper_config("small"))
    assert decoder_prefix(multi, language="de") == (50258, 50261, 50359, 50363)
    assert decoder_prefix(multi, language="de", task="translate", timestamps=True) == (50258, 50261, 50358)
    english = special_tokens(whisper_config("small.en"))
    assert decoder_prefix(english) == (50257, 50362)
    with pytest.raises(ValueError, match="needs a language"):
        decoder_prefix(multi)
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        decoder_prefix(multi, language="xx")
    with pytest.raises(ValueError, match="English-only"):
        decoder_prefix(english, language="fr")
    with pytest.raises(ValueError, match="task"):
        decoder_prefix(multi, language="en", task="summarise")
    tiny_vocab = SpecialTokens.from_layout(80, 2)
    assert decoder_prefix(tiny_vocab, language="zh") == (81, 83, 85, 89)


def test_bad_configs_are_named():
    good = whisper_config("tiny").to_transformers()
    with pytest.raises(ValueError, match="scale_embedding"):
        WhisperConfig.from_transformers({**good, "scale_embedding": True})
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        WhisperConfig.from_transformers({**good, "tie_word_embeddings": False})
    with pytest.raises(ValueError, match="model_type='wav2vec2'"):
        WhisperConfig.from_transformers({**good, "model_type": "wav2vec2"})
    with pytest.raises(ValueError, match=r"missing fields: \['d_model'\]"):
        WhisperConfig.from_transformers({k: v for k, v in good.items() if k != "d_model"})
    with pytest.raises(ValueError, match="several eos_token_id"):
        WhisperConfig.from_transformers({**good, "eos_token_id": [1, 2]})
    assert WhisperConfig.from_transformers({**good, "eos_token_id": [50257]}).eos_token_id == 50257
    with pytest.raises(ValueError, match="not divisible by decoder_heads=7"):
        whisper_config("tiny", decoder_heads=7)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        whisper_config("tiny", eos_token_id=60000)
    with pytest.raises(ValueError, match="unknown WhisperConfig fields"):
        whisper_config("tiny", hidden=3)
    with pytest.raises(ValueError, match="unknown Whisper size"):
        whisper_config("huge")
    config = whisper_config("tiny", suppress_tokens=[1, 2])
    assert config.suppress_tokens == (1, 2) and hash(config) == hash(dataclasses.replace(config))
