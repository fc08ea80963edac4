import pytest
import torch

TRICKY = [
    "A “curly” quote’s test &amp; more &amp;amp; stuff",
    "Café naïve résumé Ünïcödé — ½ ™",
    "emoji 🐶🚀 done!! 👍🏽",
    "mojibake: cafÃ© and donâ€™t",
    "  lots   of\n\twhitespace  ",
    "numbers 12345 and 3.14, 1e-5",
    "UPPER lower MiXeD",
    "don't won't I'll we've they're",
    "日本語のテキスト and Ελληνικά",
    "a literal <|endoftext|> and <|startoftext|> inside",
    "&lt;b&gt;bold&lt;/b&gt; &#39;quoted&#39;",
    "<b>bold</b> cafe&#769; and <i>re&#769;sume&#769;</i>",  # an escaped combining accent after a tag: kept decomposed
    "e\u0301 a raw decomposed accent",
    "a literal <|endoftext|>! glued to punctuation, and <|startoftext|>™",  # open_clip's word pattern, not HF's
    "",
    "word " * 400,
]


@pytest.fixture(scope="module")
def open_clip_tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


@pytest.mark.parametrize("text", TRICKY)
def test_ids_match_open_clip_exactly(tokenizer, open_clip_tokenizer, text):
    assert tokenizer.encode([text])[0] == open_clip_tokenizer.encode(text)


def test_batch_matches_open_clip_at_77_and_248(tokenizer, open_clip_tokenizer):
    for length in (77, 248):
        ours = tokenizer(TRICKY, context_length=length, padding="max_length")
        reference = open_clip_tokenizer(TRICKY, context_length=length)
        # open_clip pads with 0, we pad with the EOT id: compare where the mask is set.
        valid = ours.attention_mask.bool()
        assert torch.equal(ours.input_ids[valid], reference[valid])
        assert torch.equal(reference[~valid], torch.zeros_like(reference[~valid]))


def test_a_literal_end_of_text_is_text_in_the_kit_but_the_special_id_in_open_clip(tokenizer, open_clip_tokenizer):
    # The one deliberate difference (README, tokenizer): a caption cannot end itself early.
    ours = tokenizer.encode(["a <end_of_text> b"])[0]
    assert tokenizer.eos_token_id not in ours and len(ours) > 3
    assert open_clip_tokenizer.encode("a <end_of_text> b") == [320, 49407, 321]


def test_a_saved_tokenizer_keeps_its_own_normalizer(tokenizer, tmp_path):
    import json

    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "tokenizer.json").read_text())["normalizer"]
    assert [n["type"] for n in saved["normalizers"]] == ["NFC", "Replace", "Lowercase"]  # used without the kit's cleaning
    assert "NFC" not in str(tokenizer.hf.backend_tokenizer.normalizer)  # the kit's stays open_clip's
    pattern = json.loads((tmp_path / "tokenizer.json").read_text())["pre_tokenizer"]["pretokenizers"][0]["pattern"]
    assert "startoftext" in pattern["Regex"]  # CLIP's own word pattern in the saved file


def test_random_web_like_text_gives_open_clips_ids_except_a_literal_end_of_text(tokenizer, open_clip_tokenizer):
    import random

    random.seed(0)
    pieces = ["<b>", "</b>", "<i>x</i>", "&amp;", "&#769;", "&#776;", "&eacute;", "e\u0301", "café", "&lt;", "“q”", "’s",
              "Ã©", "â€™", "🐶", "½", "™", "日本", "  ", "\n", "!", "12,5", "<end_of_text>", "<|endoftext|>", "word", "RED"]
    texts = ["".join(random.choice(pieces) + random.choice(["", " "]) for _ in range(random.randint(1, 20)))
             for _ in range(2000)]
    differ = [t for t in texts if tokenizer.encode([t])[0] != open_clip_tokenizer.encode(t)]
    assert differ and all("<end_of_text>" in t for t in differ)  # (glued to other punctuation it stays text there too)


def test_truncation_keeps_eot_and_counts(tokenizer):
    long_text = "a red cube " * 100
    batch = tokenizer(["short one", long_text], context_length=77)
    assert batch.input_ids.shape == (2, 77)
    assert batch.input_ids[1, -1].item() == tokenizer.eos_token_id
    assert batch.input_ids[1, 0].item() == tokenizer.bos_token_id
    assert batch.truncated.tolist() == [False, True] and batch.num_truncated == 1
    assert batch.lengths.tolist() == [4, 77]
    full = tokenizer.encode([long_text])[0]
    assert batch.input_ids[1, 1:76].tolist() == full[:75]


def test_padding_longest_and_max_length(tokenizer):
    batch = tokenizer(["one", "one two three"])
    assert batch.input_ids.shape == (2, 5)
    assert batch.input_ids[0].tolist() == [49406, 637, 49407, 49407, 49407]
    assert batch.attention_mask[0].tolist() == [1, 1, 1, 0, 0]
    assert tokenizer(["one"], padding="max_length").input_ids.shape == (1, 248)


def test_count_tokens_and_decode(tokenizer):
    assert tokenizer.count_tokens(["a red cube"]) == [5]
    ids = tokenizer.encode(["a glittering cube"])[0]
    pieces = tokenizer.decode_tokens(ids)  # BPE pieces: "glittering" is two of them
    assert len(pieces) == 4 and pieces[0] == "a" and pieces[-1] == "cube"
    assert "".join(pieces[1:3]) == "glittering"
    assert tokenizer.decode_tokens([49406]) == ["<|startoftext|>"]


def test_bad_input_is_named(tokenizer):
    with pytest.raises(TypeError, match="items \\[\\(1, 'int'\\)\\]"):
        tokenizer(["ok", 3])
    with pytest.raises(ValueError, match="padding must be"):
        tokenizer(["ok"], padding="left")


def test_tokenizer_from_local_directory_round_trip(tokenizer, tmp_path):
    from finelip_kit import get_tokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = get_tokenizer(tmp_path, context_length=248)
    assert loaded.encode(TRICKY) == tokenizer.encode(TRICKY)
    import json

    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["model_max_length"] == 248
    with pytest.raises(OSError, match="could not load a tokenizer"):
        get_tokenizer(tmp_path / "missing")


def test_words_merge_bpe_pieces_and_map_tokens_to_words(tokenizer):
    words, token_word = tokenizer.words("photosynthesising xylophones, Café!")
    assert words == ["photosynthesising", "xylophones", ",", "café", "!"]
    assert token_word == [0, 0, 0, 1, 1, 1, 2, 3, 4]
    assert len(token_word) == tokenizer.count_tokens("photosynthesising xylophones, Café!")[0] - 2
    short_words, short_map = tokenizer.words("photosynthesising xylophones", context_length=6)
    assert short_words == ["photosynthesising", "xy"] and short_map == [0, 0, 0, 1]  # cut inside a word
