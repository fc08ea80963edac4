"""Alignment maps against hand computations, the plots, the pointing game's bookkeeping, the explorer."""

import matplotlib
import pytest
import torch
import torch.nn.functional as F

matplotlib.use("Agg")

from finelip_kit import create_model, get_tokenizer  # noqa: E402
from finelip_kit.data import SyntheticScenes  # noqa: E402
from finelip_kit.data.transforms import clip_transform  # noqa: E402
from finelip_kit.viz import (  # noqa: E402
    AlignmentExplorer,
    AlignmentMaps,
    alignment_maps,
    plot_caption_shading,
    plot_slot_maps,
    plot_word_heatmap,
    plot_word_slot_matrix,
    pointing_game,
    upsample,
)

CAPTION = "A photosynthesising red triangle sits above the blue xylophones."


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("tiny", atrm_k=5, atrm_k_text=3).eval()


@pytest.fixture(scope="module")
def scenes():
    return SyntheticScenes(split="test", size=8)


@pytest.fixture(scope="module")
def maps(model, scenes):
    return alignment_maps(model, scenes[0]["image"], CAPTION)


def test_word_maps_are_the_mean_piece_to_patch_cosines(model, scenes, maps):
    tokenizer = get_tokenizer(context_length=model.context_length)
    words, token_word = tokenizer.words(CAPTION)
    assert maps.words == words and words[1] == "photosynthesising" and token_word.count(1) == 3
    pixels = clip_transform(model.config.vision)(scenes[0]["image"])[None]
    batch = tokenizer([CAPTION])
    with torch.no_grad():
        patches = F.normalize(model.vision(pixels).tokens[0], dim=-1)
        tokens = F.normalize(model.text(batch.input_ids, batch.attention_mask).tokens[0], dim=-1)
    pieces = [1 + t for t, w in enumerate(token_word) if w == 1]  # after BOS
    expected = (tokens[pieces] @ patches.T).mean(0).reshape(8, 8)
    torch.testing.assert_close(maps.word_patch[1], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(maps.word_map("photosynthesising"), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(maps.patch_words(2, 3)[1], expected[2, 3])
    assert maps.grid == (8, 8) and maps.image.shape == (64, 64, 3) and maps.truncated_words == 0


def test_atrm_maps_match_the_modules(model, scenes, maps):
    pixels = clip_transform(model.config.vision)(scenes[0]["image"])[None]
    with torch.no_grad():
        vision = model.vision(pixels)
        refined, weights = model.image_atrm(vision.tokens, vision.mask)
    torch.testing.assert_close(maps.image_slots, weights[0].reshape(5, 8, 8), atol=1e-6, rtol=0)
    assert torch.allclose(maps.image_slots.sum((1, 2)), torch.ones(5), atol=1e-5)
    assert maps.text_slots.shape == (3, len(maps.words)) and maps.clim.shape == (5, 3)
    assert maps.word_slot.shape == (len(maps.words), 5) and (maps.text_slots >= 0).all()
    assert (maps.text_slots.sum(1) <= 1 + 1e-5).all()  # BOS and EOT carry the rest
    # The refined view: relu(cos(word, slot)) weighting each slot's patch map.
    index = maps.words.index("red")
    expected = (maps.word_slot[index].clamp(min=0)[:, None, None] * maps.image_slots).sum(0)
    torch.testing.assert_close(maps.word_map("red", "refined"), expected)
    batch = get_tokenizer(context_length=model.context_length)([CAPTION])
    with torch.no_grad():
        text = model.text(batch.input_ids, batch.attention_mask)
        refined_text, _ = model.text_atrm(text.tokens, text.mask)
    expected_clim = F.normalize(refined[0], dim=-1) @ F.normalize(refined_text[0], dim=-1).T
    torch.testing.assert_close(maps.clim, expected_clim, atol=1e-5, rtol=0)


def test_phrases_words_and_bad_requests(maps):
    red = maps.words.index("red")
    assert maps.word_indices("red triangle") == [red, red + 1]
    assert maps.word_indices("RED") == [red] and maps.word_indices(0) == [0]
    assert maps.word_indices(["red", 0]) == [0, red]
    torch.testing.assert_close(maps.word_map("red triangle"), maps.word_patch[[red, red + 1]].mean(0))
    with pytest.raises(ValueError, match="'green square' is not in the caption's first 10 words"):
        maps.word_map("green square")
    with pytest.raises(ValueError, match="word index 99 is out of range for 10 words"):
        maps.word_map(99)
    with pytest.raises(ValueError, match="view must be one of"):
        maps.word_map("red", "sideways")
    with pytest.raises(ValueError, match=r"patch \(8, 0\) is outside the 8 x 8 grid"):
        maps.patch_words(8, 0)


def test_no_atrm_means_raw_view_only_and_clear_errors(scenes):
    plain = create_model("tiny", use_atrm=False).eval()
    maps = alignment_maps(plain, scenes[0]["image"], CAPTION)
    assert maps.image_slots is None and maps.word_slot is None
    with pytest.raises(ValueError, match="no ATRM"):
        maps.word_map("red", "refined")
    with pytest.raises(ValueError, match="no ATRM"):
        plot_slot_maps(maps)
    with pytest.raises(ValueError, match="caption must be a non-empty string"):
        alignment_maps(plain, scenes[0]["image"], "  ")
    assert AlignmentExplorer(plain, scenes).view.options == ("raw",)


def test_long_captions_count_the_words_past_the_context(scenes):
    short = create_model("tiny", **{"text.context_length": 77, "text.stretch": "none"}).eval()
    maps = alignment_maps(short, scenes[0]["image"], scenes[0]["caption"])
    assert len(maps.words) + maps.truncated_words == len(get_tokenizer().words(scenes[0]["caption"])[0])
    assert maps.truncated_words > 0 and maps.word_patch.shape[0] == len(maps.words)


def test_upsample_keeps_a_constant_map_and_the_size():
    assert upsample(torch.full((8, 8), 0.5), (64, 48)).shape == (64, 48)
    assert abs(upsample(torch.full((8, 8), 0.5), (64, 64)) - 0.5).max() < 1e-6


def test_figures_render_and_save(maps, tmp_path):
    fig = plot_word_heatmap(maps, "red triangle", view="refined", alpha=0.3, path=tmp_path / "h.pdf")
    assert fig.axes[0].get_title() == "'red triangle' (refined)" and (tmp_path / "h.pdf").read_bytes()[:4] == b"%PDF"
    assert fig.axes[0].images[1].get_alpha() == 0.3 and fig.axes[0].images[1].get_array().shape == (64, 64)
    with pytest.raises(ValueError, match="alpha"):
        plot_word_heatmap(maps, "red", alpha=1.5)
    matrix = plot_word_slot_matrix(maps, path=tmp_path / "m.png")
    assert matrix.axes[0].images[0].get_array().shape == (10, 5)
    assert len([a for a in plot_slot_maps(maps, path=tmp_path / "s.png").axes if a.images]) == 5
    shading = plot_caption_shading(maps, path=tmp_path / "c.png")
    assert [t.get_text() for t in shading.axes[0].texts][:3] == maps.words[:3]
    with pytest.raises(ValueError, match="one entry per word"):
        plot_caption_shading(maps, values=torch.zeros(3))
    for name in ("m.png", "s.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def _rigged_maps(objects, offset):
    """Maps whose 'colour shape' heatmap peaks at each object's cell shifted by ``offset`` cells."""
    words, heat = [], []
    for obj in objects:
        words += [obj.colour, obj.shape]
        peak = torch.zeros(8, 8)
        peak[2 * ((obj.row + offset) % 4), 2 * obj.col] = 1.0
        heat += [peak, peak]
    return AlignmentMaps(image=None, caption="", words=words, truncated_words=0, word_patch=torch.stack(heat),
                         image_slots=None, text_slots=None, word_slot=None, clim=None)


@pytest.mark.parametrize("offset, accuracy", [(0, 100.0), (1, 0.0)])
def test_pointing_game_counts_hits_in_the_named_objects_cell(scenes, monkeypatch, offset, accuracy):
    from collections import Counter

    import finelip_kit.viz as viz

    objects = {scenes[i]["caption"]: scenes.objects(i) for i in range(4)}
    monkeypatch.setattr(viz, "alignment_maps", lambda model, image, caption: _rigged_maps(objects[caption], offset))
    unique = 0
    for scene in objects.values():
        counts = Counter((o.colour, o.shape) for o in scene)
        unique += sum(counts[(o.colour, o.shape)] == 1 for o in scene)
    assert 0 < unique < sum(len(scene) for scene in objects.values())  # some repeated pairs are left out
    result = pointing_game(None, scenes, indices=range(4))
    assert result == {"accuracy": accuracy, "chance": 6.25, "objects": unique, "skipped": 0}


def test_explorer_redraws_on_word_view_opacity_and_sample(model, scenes):
    explorer = AlignmentExplorer(model, scenes, index=0)
    first = explorer.heatmap.value
    assert first[:4] == b"\x89PNG" and len(explorer.word_box.children) == len(explorer.maps.words)
    explorer.word_box.children[5].click()
    assert explorer.word == 5 and explorer.heatmap.value != first
    assert explorer.word_box.children[5].button_style == "info"
    after_word = explorer.heatmap.value
    explorer.view.value = "refined"
    assert explorer.heatmap.value != after_word
    explorer.opacity.value = 0.1
    explorer.cells.children[3 * 8 + 4].click()
    assert "patch (3, 4)" in explorer.caption_view.value
    explorer.sample.value = 1
    assert explorer.maps.caption == scenes[1]["caption"] and explorer.caption_view.value == ""
    bundle = explorer._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data and "image/png" in data
