"""Long-prompt diffusion pipelines, on tiny random SD1.5 / SDXL pipelines built here (no weights)."""

import json

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from finelip_kit import FineLIP  # noqa: E402
from finelip_kit.generate import (  # noqa: E402
    text_embeddings,
    compare_long_prompts,
    load_prompts,
    long_prompt_pipeline,
    long_prompt_pipeline_xl,
    split_at_context,
    stretch_text_encoder,
)
from finelip_kit.positional import stretch_position_embedding  # noqa: E402
from finelip_kit.pretrained import export_text_encoder  # noqa: E402
from finelip_kit.views.generate import tiny_sd_pipeline, tiny_sdxl_pipeline  # noqa: E402

# 137 CLIP tokens; the two versions differ only in one word near token 133.
WORDS = "a red square sits next to a blue circle on a wooden table , " * 9
PROMPT_A = WORDS + "and far behind them stands a green tower ."
PROMPT_B = WORDS + "and far behind them stands a purple tower ."


@pytest.fixture(scope="module")
def long_model():
    return FineLIP.from_pretrained("tiny-synthetic-clip", **{"text.context_length": 248, "text.stretch": "kps"})


@pytest.fixture(scope="module")
def long_dir(tmp_path_factory, long_model):
    return export_text_encoder(long_model, tmp_path_factory.mktemp("long_text"))


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sd")
    tiny_sd_pipeline(directory)
    return directory


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sdxl")
    tiny_sdxl_pipeline(directory)
    return directory


def _original(directory, xl=False):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    pipe = (StableDiffusionXLPipeline if xl else StableDiffusionPipeline).from_pretrained(str(directory))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _first_difference(pipe, a: str, b: str) -> int:
    ids_a = pipe.tokenizer(a, add_special_tokens=True)["input_ids"]
    ids_b = pipe.tokenizer(b, add_special_tokens=True)["input_ids"]
    return next(i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y)


def test_prompts_are_long_and_differ_past_token_77(long_dir):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(long_dir))
    a = tokenizer(PROMPT_A)["input_ids"]
    assert 130 < len(a) < 248
    differ = next(i for i, (x, y) in enumerate(zip(a, tokenizer(PROMPT_B)["input_ids"])) if x != y)
    assert differ > 100


def test_split_at_context_names_what_a_77_token_encoder_drops(long_dir):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(long_dir))
    kept, dropped = split_at_context(PROMPT_A, tokenizer, 77)
    assert len(tokenizer(kept, add_special_tokens=False)["input_ids"]) == 75
    assert dropped.endswith("stands a green tower .") and "green" not in kept
    assert kept + " " + dropped == tokenizer.decode(tokenizer(PROMPT_A, add_special_tokens=False)["input_ids"])
    assert split_at_context("a red square", tokenizer, 77) == ("a red square", "")


def test_stretch_text_encoder_is_long_clips_table_and_runs_248_tokens(sd):
    encoder = _original(sd).text_encoder
    original = text_embeddings(encoder).position_embedding.weight.detach().clone()
    stretch_text_encoder(encoder, 248)
    table = text_embeddings(encoder).position_embedding.weight
    assert torch.equal(table, stretch_position_embedding(original, 248, keep=20, mode="kps"))
    assert encoder.config.max_position_embeddings == 248
    assert encoder(torch.full((1, 248), 320)).last_hidden_state.shape == (1, 248, 96)
    assert stretch_text_encoder(encoder, 248) is encoder
    with pytest.raises(ValueError, match="already has 248 positions, more than context_length=100"):
        stretch_text_encoder(encoder, 100)


def test_sd15_long_pipeline_embeds_tokens_past_77_and_the_original_does_not(sd, long_dir):
    original = _original(sd)
    long = long_prompt_pipeline(original, long_dir)
    assert long.tokenizer.model_max_length == 248 and long.text_encoder.config.max_position_embeddings == 248
    assert long.unet is original.unet  # components shared
    cut = _first_difference(long, PROMPT_A, PROMPT_B)
    a, neg_a = long.encode_prompt(PROMPT_A, "cpu", 1, True, negative_prompt=PROMPT_A)
    b, neg_b = long.encode_prompt(PROMPT_B, "cpu", 1, True, negative_prompt=PROMPT_B)
    assert a.shape == (1, 248, 96)
    assert torch.equal(a[:, :cut], b[:, :cut]) and not torch.allclose(a[:, cut:], b[:, cut:])  # causal: later tokens only
    assert not torch.allclose(neg_a, neg_b)  # the negative prompt is long too
    short_a, _ = original.encode_prompt(PROMPT_A, "cpu", 1, True)
    short_b, _ = original.encode_prompt(PROMPT_B, "cpu", 1, True)
    assert short_a.shape == (1, 77, 96) and torch.equal(short_a, short_b)

    def image(pipe, prompt):
        generator = torch.Generator().manual_seed(0)
        return pipe(prompt, num_inference_steps=2, generator=generator, output_type="np").images[0]

    assert image(long, PROMPT_A).shape == (64, 64, 3)
    assert not np.allclose(image(long, PROMPT_A), image(long, PROMPT_B))
    assert np.array_equal(image(original, PROMPT_A), image(original, PROMPT_B))


def test_sd15_long_pipeline_saves_and_reloads_with_its_length(sd, long_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    long = long_prompt_pipeline(str(sd), long_dir)
    long.save_pretrained(str(tmp_path))
    again = StableDiffusionPipeline.from_pretrained(str(tmp_path))
    assert again.tokenizer.model_max_length == 248 and again.text_encoder.config.max_position_embeddings == 248
    torch.testing.assert_close(again.encode_prompt(PROMPT_A, "cpu", 1, False)[0],
                               long.encode_prompt(PROMPT_A, "cpu", 1, False)[0])


def test_sd15_from_a_finelip_model_and_width_errors(sd, long_model):
    from transformers import CLIPTextConfig, CLIPTextModel

    long = long_prompt_pipeline(str(sd), long_model)
    assert long.text_encoder.config.max_position_embeddings == 248
    narrow = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                          max_position_embeddings=248))
    with pytest.raises(ValueError, match="has width 32 but the pipeline's text encoder has 96"):
        long_prompt_pipeline(str(sd), (narrow, long.tokenizer))
    with pytest.raises(FileNotFoundError, match="is not a text-encoder export"):
        long_prompt_pipeline(str(sd), str(sd / "nowhere"))


def test_sdxl_both_encoders_take_the_long_prompt_and_the_pooled_one_comes_from_encoder_2(sdxl, long_dir, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    original = _original(sdxl, xl=True)
    table = text_embeddings(original.text_encoder_2).position_embedding.weight.detach().clone()
    long = long_prompt_pipeline_xl(original, long_dir)
    assert original.text_encoder_2.config.max_position_embeddings == 77  # the original is left alone
    assert long.tokenizer.model_max_length == long.tokenizer_2.model_max_length == 248
    assert torch.equal(text_embeddings(long.text_encoder_2).position_embedding.weight,
                       stretch_position_embedding(table, 248, keep=20, mode="kps"))
    embeds_a, _, pooled_a, _ = long.encode_prompt(PROMPT_A, device="cpu", do_classifier_free_guidance=False)
    embeds_b, _, pooled_b, _ = long.encode_prompt(PROMPT_B, device="cpu", do_classifier_free_guidance=False)
    assert embeds_a.shape == (1, 248, 96 + 32) and pooled_a.shape == (1, 32)
    assert not torch.allclose(pooled_a, pooled_b) and not torch.allclose(embeds_a, embeds_b)
    _, _, short_a, _ = original.encode_prompt(PROMPT_A, device="cpu", do_classifier_free_guidance=False)
    _, _, short_b, _ = original.encode_prompt(PROMPT_B, device="cpu", do_classifier_free_guidance=False)
    assert torch.equal(short_a, short_b)
    image = long(PROMPT_A, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
    long.save_pretrained(str(tmp_path))
    again = StableDiffusionXLPipeline.from_pretrained(str(tmp_path))
    assert again.tokenizer_2.model_max_length == 248 and again.text_encoder_2.config.max_position_embeddings == 248


def test_compare_long_prompts_grid_dropped_text_and_scores(sd, long_dir, long_model):
    comparison = compare_long_prompts([PROMPT_A, "a red square"], str(sd), long_dir, seeds=[0, 1], num_inference_steps=2,
                                      score_with=long_model)
    assert len(comparison.images) == 2 * 2 * 2
    assert comparison.dropped[0].endswith("green tower .") and comparison.dropped[1] == ""
    assert comparison.kept[1] == "a red square"
    scores = comparison.scores
    assert len(scores) == 8 and set(scores.pipeline) == {"77 tokens", "long"} and scores.score.between(-1, 1).all()
    assert len(comparison.figure.axes) == 8  # 4 rows (prompt x seed) x 2 pipelines
    texts = [t.get_text() for t in comparison.figure.axes[0].texts]
    assert any(t.startswith("dropped at 77 tokens:") for t in texts)
    long_image = np.asarray(comparison.images[(0, 0, "long")])
    assert not np.array_equal(long_image, np.asarray(comparison.images[(0, 0, "77 tokens")]))
    with pytest.raises(ValueError, match="non-empty list of strings"):
        compare_long_prompts("one prompt", str(sd), long_dir)


def test_load_prompts_from_text_json_and_the_examples(tmp_path):
    (tmp_path / "p.txt").write_text("first prompt\n\n  second prompt  \n")
    assert load_prompts(tmp_path / "p.txt") == ["first prompt", "second prompt"]
    (tmp_path / "p.json").write_text(json.dumps(["a", "b"]))
    assert load_prompts(tmp_path / "p.json") == ["a", "b"]
    assert len(load_prompts(None)) == 2
    (tmp_path / "bad.json").write_text(json.dumps(["a", ""]))
    with pytest.raises(ValueError, match="not a non-empty string"):
        load_prompts(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_prompts(tmp_path / "missing.txt")
