import math

import pytest
import torch

from finelip_kit import FineLIPConfig, create_model, get_tokenizer, global_similarity, preset
from finelip_kit.clim import clim_scores
from finelip_kit.losses import info_nce, positives_from_ids, triplet_loss

SMALL = {"vision.image_size": 32, "text.context_length": 96, "atrm_k": 4}


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer(context_length=96)


def make_batch(tok, n=4):
    captions = [f"a {c} cube and " * (2 + 4 * i) for i, c in enumerate(["red", "blue", "green", "pink"][:n])]
    tokens = tok(captions)
    return dict(images=torch.randn(n, 3, 32, 32), input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)


def test_config_errors_name_the_value():
    with pytest.raises(ValueError, match="atrm_k must be an integer >= 1, got 0"):
        preset("tiny", atrm_k=0)
    with pytest.raises(ValueError, match="loss must be one of .* got 'triplet'"):
        preset("tiny", loss="triplet")
    with pytest.raises(ValueError, match="exceeds text.pretrained_context"):
        preset("tiny", **{"text.stretch": "none"})
    with pytest.raises(ValueError, match="multiple of vision.patch_size"):
        preset("tiny", **{"vision.image_size": 60})
    with pytest.raises(ValueError, match="use_clim=False leaves no fine-grained score"):
        preset("tiny", use_clim=False)
    with pytest.raises(KeyError, match=r"unknown setting 'model.atrm'.*did you mean \['model.atrm_k', 'model.use_atrm'\]"):
        preset("tiny", atrm=3)
    with pytest.raises(KeyError, match="unknown preset 'huge'"):
        preset("huge")
    with pytest.raises(KeyError, match=r"config.text has unknown keys \['colour'\]"):
        FineLIPConfig.from_dict({"text": {"colour": 1}})


def test_presets_follow_the_paper():
    b16, l14 = preset("clip-b16"), preset("clip-l14")
    assert b16.atrm_k == 39 and b16.vision.num_patches == 196  # 20% of 196 patches
    assert l14.atrm_k == 51 and l14.vision.num_patches == 256
    assert b16.text.context_length == 248 and b16.text.keep == 20 and b16.text.freeze_kept_positions
    assert (b16.embed_dim, b16.text.width, b16.vision.width) == (512, 512, 768)
    assert (l14.embed_dim, l14.text.width, l14.vision.width) == (768, 768, 1024)
    assert b16.logit_scale_init == pytest.approx(math.log(100))


def test_config_round_trips_through_dict():
    config = preset("tiny", atrm_k=7, **{"text.stretch": "linear"})
    assert FineLIPConfig.from_dict(config.to_dict()) == config
    assert config.text.stretch == "linear" and config.atrm_k == 7 and config.text_k == 7


def test_encode_shapes_with_and_without_atrm(tok):
    batch = make_batch(tok)
    model = create_model("tiny", **SMALL).eval()
    image = model.encode_image(batch["images"])
    text = model.encode_text(batch["input_ids"], batch["attention_mask"])
    assert image.tokens.shape == (4, 5, 64) and text.tokens.shape == (4, 5, 64)
    assert image.mask.all() and text.mask.all()
    assert image.slot_weights.shape == (4, 4, 16)
    assert torch.equal(image.tokens[:, 0], image.global_) and torch.equal(text.tokens[:, 0], text.global_)
    raw = create_model("tiny", use_atrm=False, **SMALL).eval()
    text = raw.encode_text(batch["input_ids"], batch["attention_mask"])
    lengths = batch["attention_mask"].sum(-1)
    # EOT first, then the tokens before it (BOS and words): lengths in total.
    assert text.mask.sum(-1).tolist() == lengths.tolist()
    assert raw.image_atrm is None and raw.encode_image(batch["images"]).tokens.shape == (4, 17, 64)


def test_similarity_modes(tok):
    batch = make_batch(tok)
    model = create_model("tiny", **SMALL).eval()
    with torch.no_grad():
        image = model.encode_image(batch["images"])
        text = model.encode_text(batch["input_ids"], batch["attention_mask"])
        g = model.similarity(image, text, "global")
        f = model.similarity(image, text, "fine")
        fused = model.similarity(image, text, "fused", fuse_weight=0.2)
    torch.testing.assert_close(g, global_similarity(image.global_, text.global_))
    torch.testing.assert_close(f, clim_scores(image.tokens, text.tokens))
    torch.testing.assert_close(fused, 0.8 * g + 0.2 * f)
    with pytest.raises(ValueError, match="mode must be"):
        model.similarity(image, text, "late")


@pytest.mark.parametrize("loss", ["fine", "global", "global+fine"])
def test_forward_loss_recipes_compose_the_loss_functions(tok, loss):
    batch = make_batch(tok)
    batch["image_ids"] = torch.tensor([0, 1, 1, 2])
    model = create_model("tiny", loss=loss, fine_weight=0.5, **SMALL).eval()
    terms = model(batch)
    with torch.no_grad():
        image = model.encode_image(batch["images"])
        text = model.encode_text(batch["input_ids"], batch["attention_mask"])
        expected = {}
        if loss != "fine":
            expected["global"] = info_nce(image.global_, text.global_, model.logit_scale, batch["image_ids"])
        if loss != "global":
            scores = clim_scores(image.tokens, text.tokens)
            expected["fine"] = triplet_loss(scores, positives_from_ids(batch["image_ids"], 4, scores.device))
    assert set(terms) == set(expected) | {"loss"}
    for key, value in expected.items():
        torch.testing.assert_close(terms[key], value)
    total = expected.get("global", 0) + 0.5 * expected.get("fine", 0)
    torch.testing.assert_close(terms["loss"], torch.as_tensor(total))
    terms["loss"].backward()
    assert model.logit_scale.grad is not None or loss == "fine"


def test_forward_overrides_and_global_only_model(tok):
    batch = make_batch(tok)
    model = create_model("tiny", **SMALL).eval()
    assert model(batch, fine_weight=0.0)["loss"].item() == 0.0
    assert model(batch, negatives="hardest")["fine"] <= model(batch, negatives="sum")["fine"]
    plain = create_model("tiny", use_clim=False, loss="global", **SMALL)
    assert plain.image_atrm is None and set(plain(batch)) == {"global", "loss"}
    with pytest.raises(ValueError, match="needs CLIM"):
        plain.similarity(plain.encode_image(batch["images"]), plain.encode_text(batch["input_ids"]), "fine")


def test_temperature_is_clamped_in_the_loss(tok):
    batch = make_batch(tok)
    model = create_model("tiny", loss="global", **SMALL).eval()
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
        at_cap = model(batch)["global"]
        model.logit_scale.fill_(math.log(100))
        torch.testing.assert_close(model(batch)["global"], at_cap)


def test_primary_component_term_needs_short_captions(tok):
    batch = make_batch(tok)
    model = create_model("tiny", pcm_weight=0.3, pcm_components=2, **SMALL)
    with pytest.raises(KeyError, match="short_input_ids"):
        model(batch)
    short = tok(["red cube", "blue cube", "green cube", "pink cube"])
    terms = model({**batch, "short_input_ids": short.input_ids, "short_attention_mask": short.attention_mask})
    assert set(terms) == {"fine", "pcm", "loss"}
    torch.testing.assert_close(terms["loss"], terms["fine"] + 0.3 * terms["pcm"])


def test_context_77_model_truncates_like_clip(tok):
    model = create_model("tiny", **{"vision.image_size": 32, "text.context_length": 77, "text.stretch": "none"})
    assert model.context_length == 77
    assert model.text.position_table.shape[0] == 77


def test_the_slot_diversity_term_reaches_atrm_and_needs_it():
    model = create_model("tiny", slot_diversity_weight=1.0, **{"vision.image_size": 32, "atrm_k": 4})
    images, ids = torch.randn(4, 3, 32, 32), torch.randint(0, 1000, (4, 12))
    ids[:, 0], ids[:, -1] = 49406, 49407
    terms = model({"images": images, "input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert 0.95 < terms["diversity"].item() <= 1.0  # a fresh ATRM: slots weigh the tokens almost alike
    terms["loss"].backward()
    assert model.image_atrm.score[1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="slot_diversity_weight .* needs use_atrm=True"):
        create_model("tiny", slot_diversity_weight=1.0, use_atrm=False, loss="global", use_clim=False)
