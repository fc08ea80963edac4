import pytest
import torch

from finelip_kit.config import TextConfig, VisionConfig
from finelip_kit.towers import TextTower, VisionTower

TINY_TEXT = dict(width=32, depth=2, heads=2, mlp_dim=64, act="gelu")


def text_tower(**overrides) -> TextTower:
    return TextTower.from_config(TextConfig(**{**TINY_TEXT, **overrides}), embed_dim=16).eval()


def test_text_outputs_shapes_and_mask(tokenizer):
    tower = text_tower()
    batch = tokenizer(["a red cube", "two blue balls on the left"])
    out = tower(batch.input_ids, batch.attention_mask)
    n = batch.input_ids.shape[1]
    assert out.global_.shape == (2, 16) and out.tokens.shape == (2, n, 16)
    # Mask: the tokens before the EOT (BOS and words).
    assert out.mask.sum(-1).tolist() == [4, 7]
    eot = batch.lengths - 1
    assert torch.equal(out.global_, out.tokens[torch.arange(2), eot])


def test_eot_pooling_same_under_every_padding_scheme(tokenizer):
    tower = text_tower()
    texts = ["a red cube", "two blue balls on the left of a green cone"]
    hf_style = tokenizer(texts)  # padded with the EOT id, with a mask
    reference = tower(hf_style.input_ids, hf_style.attention_mask).global_
    # open_clip style: padded with 0, padded to the full context, no mask.
    zeros = tokenizer(texts, padding="max_length").input_ids.masked_fill(
        tokenizer(texts, padding="max_length").attention_mask == 0, 0
    )
    torch.testing.assert_close(tower(zeros).global_, reference, atol=1e-5, rtol=0)
    # EOT-padded without a mask: the first EOT after BOS is the end.
    torch.testing.assert_close(tower(hf_style.input_ids).global_, reference, atol=1e-5, rtol=0)
    # A pad id that is neither 0 nor EOT, with a mask.
    odd = hf_style.input_ids.masked_fill(hf_style.attention_mask == 0, 1234)
    torch.testing.assert_close(tower(odd, hf_style.attention_mask).global_, reference, atol=1e-5, rtol=0)
    # Each text alone (no padding at all).
    for i, text in enumerate(texts):
        alone = tokenizer([text])
        torch.testing.assert_close(tower(alone.input_ids).global_[0], reference[i], atol=1e-5, rtol=0)


def test_eot_pooling_ignores_legacy_eos_token_id_2(tokenizer):
    # transformers' legacy configs carry eos_token_id=2 and pool at argmax(input_ids); our tower
    # pools at the real EOT whatever the HF config says.
    tower = text_tower()
    tower.transformer.config.eos_token_id = 2
    batch = tokenizer(["a red cube", "b"])
    out = tower(batch.input_ids, batch.attention_mask)
    assert torch.equal(out.global_, out.tokens[torch.arange(2), batch.lengths - 1])


def test_row_without_eot_raises_instead_of_pooling_bos(tokenizer):
    tower = text_tower()
    ids = tokenizer(["a red cube on a table"]).input_ids[:, :4]  # truncated by hand, EOT lost
    with pytest.raises(ValueError, match=r"text rows \[0\] have no end-of-text token"):
        tower(ids)
    with pytest.raises(ValueError, match="right-padded"):
        tower(ids, torch.tensor([[0, 1, 1, 1]]))


def test_too_long_input_names_the_context(tokenizer):
    tower = text_tower(stretch="none", context_length=77)
    ids = tokenizer(["word " * 200], context_length=100).input_ids
    with pytest.raises(ValueError, match="has 100 positions but the text tower has 77"):
        tower(ids)


def test_stretch_resizes_table_ids_and_config():
    tower = text_tower(context_length=248, stretch="kps")
    assert tower.context_length == 248
    assert tower.position_table.shape == (248, 32)
    assert tower.transformer.config.max_position_embeddings == 248
    assert tower.transformer.embeddings.position_ids.tolist() == [list(range(248))]


def test_short_texts_are_unchanged_by_kps_stretching(tokenizer):
    base = text_tower(stretch="none", context_length=77)
    stretched = TextTower(base.transformer, base.projection)
    table = base.position_table.detach().clone()
    batch = tokenizer(["a red cube to the left of a blue ball", "x"])  # < 20 tokens
    before = base(batch.input_ids, batch.attention_mask)
    stretched.stretch_positions(TextConfig(**TINY_TEXT, context_length=248, stretch="kps"))
    after = stretched(batch.input_ids, batch.attention_mask)
    assert torch.equal(stretched.position_table[:20], table[:20])
    torch.testing.assert_close(after.global_, before.global_, atol=1e-6, rtol=0)
    torch.testing.assert_close(after.tokens[after.mask], before.tokens[before.mask], atol=1e-6, rtol=0)


def test_frozen_kept_positions_get_no_gradient_and_stay_out_of_parameters(tokenizer):
    tower = text_tower(freeze_kept_positions=True).train()
    table = tower.transformer.embeddings.position_embedding
    assert table.frozen.shape == (20, 32) and table.trainable.shape == (228, 32)
    names = [n for n, _ in tower.named_parameters()]
    assert "transformer.embeddings.position_embedding.trainable" in names
    assert not any(n.endswith("position_embedding.frozen") for n in names)
    batch = tokenizer(["word " * 100])
    tower(batch.input_ids).global_.sum().backward()
    assert table.trainable.grad is not None and table.trainable.grad.abs().sum() > 0


def test_vision_tower_global_is_timm_head_output():
    config = VisionConfig(image_size=32, patch_size=8, width=48, depth=2, heads=3)
    tower = VisionTower.from_config(config, embed_dim=24).eval()
    images = torch.randn(3, 3, 32, 32)
    out = tower(images)
    assert out.global_.shape == (3, 24) and out.tokens.shape == (3, 16, 24)
    assert out.mask.all() and tower.grid_size == (4, 4)
    torch.testing.assert_close(out.global_, tower.vit(images), atol=1e-6, rtol=0)
    # CLIP conventions: pre-norm, no patch-embedding bias, LayerNorm eps 1e-5, quick GELU.
    assert tower.vit.patch_embed.proj.bias is None
    assert tower.vit.norm.eps == 1e-5
    assert type(tower.vit.blocks[0].mlp.act).__name__ == "QuickGELU"
