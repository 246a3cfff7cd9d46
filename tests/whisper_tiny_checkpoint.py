"""A tiny random transformers Whisper checkpoint directory with a matching tokenizer (test helper).

Vocabulary of 96: 80 single-character text tokens (byte-level, so " " is stored as "Ġ"), then
eot 80, sot 81, languages en 82 and zh 83, translate 84, transcribe 85, start-of-lm 86,
start-of-prev 87, no-speech 88, no-timestamps 89, six timestamp tokens 90..95. The model has
the real front end (80 mels, 30 s windows) and is as small as that allows.
"""

import json

# No characters that transformers' clean_up_tokenization rewrites (. , ? ! '), so decoding a
# sequence of ids is exactly the concatenation of CHARACTERS.
CHARACTERS = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-:;()[]{}+=/&%$#@*"[:80]
SPECIAL_TOKENS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>", "<|transcribe|>",
                  "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>",
                  *(f"<|{0.02 * i:.2f}|>" for i in range(6))]  # fmt: skip
EOT, SOT, EN, ZH, TRANSCRIBE, NO_TIMESTAMPS = 80, 81, 82, 83, 85, 89


def reference_decode(ids):
    """Text of text-token ids, independent of transformers."""
    return "".join(CHARACTERS[i] for i in ids)


def save_tokenizer(path, characters=CHARACTERS):
    import transformers

    vocab = {("\u0120" if c == " " else c): i for i, c in enumerate(characters)}
    tokenizer = transformers.WhisperTokenizer(vocab=vocab, merges=[])
    tokenizer.add_tokens(SPECIAL_TOKENS[1:], special_tokens=True)  # <|endoftext|> is already eos/unk
    tokenizer.save_pretrained(path)
    return tokenizer


def build_checkpoint(path, *, multilingual=True, seed=0):
    """Saves model, tokenizer and generation_config.json (``is_multilingual``) under ``path``."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.WhisperConfig(
        vocab_size=96, num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=1500,
        max_target_positions=24, decoder_start_token_id=SOT, eos_token_id=EOT, pad_token_id=EOT, bos_token_id=EOT,
        begin_suppress_tokens=None, suppress_tokens=None, init_std=0.2,
    )  # fmt: skip
    transformers.WhisperForConditionalGeneration(config).eval().save_pretrained(path)
    generation = path / "generation_config.json"
    fields = json.loads(generation.read_text()) if generation.exists() else {}
    generation.write_text(json.dumps({**fields, "is_multilingual": multilingual}))
    save_tokenizer(path)
    return path
