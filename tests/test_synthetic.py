"""The embedded synthetic benchmark: determinism, hard groups, lengths, formats."""

import numpy as np
import pytest

from finelip_kit.data import SyntheticConfig, SyntheticScenes, load_pairs, show_samples, to_hf_dataset, write_jsonl
from finelip_kit.data.synthetic import CLIP_TEXT_TOKENS


@pytest.fixture(scope="module")
def scenes():
    return SyntheticScenes(SyntheticConfig(), split="test", size=200)


def test_deterministic_and_splits_differ():
    a, b = SyntheticScenes(split="train", size=8), SyntheticScenes(split="train", size=8)
    for i in range(8):
        assert a[i]["caption"] == b[i]["caption"]
        assert np.array_equal(np.asarray(a[i]["image"]), np.asarray(b[i]["image"]))
    val = SyntheticScenes(split="val", size=8)
    assert all(a[i]["caption"] != val[i]["caption"] for i in range(8))
    other_seed = SyntheticScenes(SyntheticConfig(seed=1), split="train", size=8)
    assert a[0]["caption"] != other_seed[0]["caption"]


def test_group_truncations_identical_at_77_tokens_and_captions_differ(scenes, tokenizer):
    for group in range(10):
        members = [scenes[group * 4 + m] for m in range(4)]
        captions = [r["caption"] for r in members]
        assert len(set(captions)) == 4
        truncated = tokenizer(captions, context_length=77).input_ids
        assert (truncated == truncated[0]).all()
        full = tokenizer(captions, context_length=248)
        assert full.num_truncated == 0
        assert len({tuple(row.tolist()) for row in full.input_ids}) == 4
        late = members[0]["late_token"]
        assert late >= CLIP_TEXT_TOKENS
        ids = [tokenizer.encode([c])[0] for c in captions]
        first_difference = min(next(k for k, (x, y) in enumerate(zip(ids[0], other)) if x != y) for other in ids[1:])
        assert first_difference >= late


def test_group_images_differ_only_in_the_late_objects_cells(scenes):
    cfg = scenes.config
    cell = cfg.image_size // cfg.grid_size
    group = scenes._group(3)
    changed_cells = {(o.row, o.col) for o in group["members"][0][-cfg.differing_objects :]}
    images = [np.asarray(scenes[12 + m]["image"]).astype(int) for m in range(4)]
    for other in images[1:]:
        diff = np.abs(images[0] - other).sum(-1)
        for row in range(cfg.grid_size):
            for col in range(cfg.grid_size):
                block = diff[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell]
                if (row, col) not in changed_cells:
                    assert block.max() == 0, (row, col)


def test_caption_lengths_and_short_captions(scenes, tokenizer):
    lengths = np.array(tokenizer.count_tokens([r["caption"] for r in scenes.records()]))
    assert (lengths > 77).mean() >= 0.95  # most captions exceed CLIP's context
    assert lengths.max() <= 248
    for record in scenes.records(range(20)):
        assert record["caption"].startswith(record["short_caption"])
        assert record["short_caption"].endswith(".") and record["short_caption"].count(".") == 1
        assert tokenizer.count_tokens([record["alt_caption"]])[0] < 20


def test_late_offset_moves_the_differing_details():
    scenes = SyntheticScenes(SyntheticConfig(late_offset=30, relation_sentences=3), split="test", size=16)
    assert all(r["late_token"] >= 105 for r in scenes.records())


def test_knobs_are_validated_with_clear_errors():
    with pytest.raises(ValueError, match="image_size \\(60\\) must be a multiple of grid_size \\(8\\)"):
        SyntheticConfig(image_size=60, grid_size=8)
    with pytest.raises(ValueError, match="colours must be >= 2 of"):
        SyntheticConfig(colours=("red", "mauve"))
    with pytest.raises(ValueError, match="only 4 variants of the differing objects exist for group_size 5"):
        SyntheticConfig(colours=("red", "blue"), shapes=("square", "circle"), sizes=("small",), group_size=5)
    with pytest.raises(ValueError, match="too short to put the differing details"):
        SyntheticScenes(SyntheticConfig(min_objects=2, max_objects=2, relation_sentences=0, late_offset=200), split="test", size=4)[0]
    with pytest.raises(IndexError):
        SyntheticScenes(split="test", size=4)[4]


def test_hf_dataset_and_jsonl_round_trip(tmp_path, scenes):
    small = SyntheticScenes(scenes.config, split="test", size=8)
    hf = to_hf_dataset(small)
    assert len(hf) == 8 and hf[3]["caption"] == small[3]["caption"] and hf[3]["image"].size == (64, 64)
    manifest = write_jsonl(small, tmp_path)
    pairs = load_pairs(manifest)
    assert len(pairs) == 8 and pairs.hf["group"] == [0] * 4 + [1] * 4
    assert pairs.hf["caption"] == [r["caption"] for r in small.records()]
    assert np.array_equal(np.asarray(pairs[5]["image"]), np.asarray(small[5]["image"]))


def test_show_samples_draws_a_figure(scenes):
    import matplotlib

    matplotlib.use("Agg")
    figure = show_samples(scenes, indices=(0, 1))
    assert len(figure.axes) == 4
    assert scenes[0]["caption"][:20] in figure.axes[1].texts[0].get_text().replace("\n", " ")


def _late_pair(scenes, index):
    return scenes.objects(index)[-2:]


def test_binding_groups_swap_attributes_between_two_late_objects(tokenizer):
    config = SyntheticConfig(group_kind="binding", differing_objects=2)
    scenes = SyntheticScenes(config, split="test", size=40)
    cell = config.image_size // config.grid_size
    for group in range(10):
        members = [scenes[group * 4 + m] for m in range(4)]
        captions = [r["caption"] for r in members]
        assert len(set(captions)) == 4
        # the same bag of words: only which attribute goes with which object tells members apart
        bags = [sorted(c.replace(".", " ").replace(",", " ").split()) for c in captions]
        assert all(bag == bags[0] for bag in bags)
        truncated = tokenizer(captions, context_length=77).input_ids
        assert (truncated == truncated[0]).all()
        ids = [tokenizer.encode([c])[0] for c in captions]
        first_difference = min(next(k for k, (x, y) in enumerate(zip(ids[0], other)) if x != y) for other in ids[1:])
        assert first_difference >= members[0]["late_token"] >= CLIP_TEXT_TOKENS
        pairs = [_late_pair(scenes, group * 4 + m) for m in range(4)]
        a, b = pairs[0]
        assert all(getattr(a, x) != getattr(b, x) for x in ("colour", "shape", "size"))  # every swap is visible
        for first, second in pairs[1:]:
            assert (first.row, first.col, second.row, second.col) == (a.row, a.col, b.row, b.col)
            for attribute in ("colour", "shape", "size"):  # each attribute stays or swaps, never anything else
                got = (getattr(first, attribute), getattr(second, attribute))
                assert got in ((getattr(a, attribute), getattr(b, attribute)), (getattr(b, attribute), getattr(a, attribute)))
        assert len({tuple((o.colour, o.shape, o.size) for o in pair) for pair in pairs}) == 4
        # pixels differ only in the two swapped objects' cells
        images = [np.asarray(r["image"]).astype(int) for r in members]
        changed = {(a.row, a.col), (b.row, b.col)}
        for other in images[1:]:
            diff = np.abs(images[0] - other).sum(-1)
            for row in range(config.grid_size):
                for col in range(config.grid_size):
                    if (row, col) not in changed:
                        assert diff[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell].max() == 0


def test_binding_with_one_size_swaps_colour_and_shape_only():
    scenes = SyntheticScenes(SyntheticConfig(group_kind="binding", differing_objects=2, sizes=("small",)),
                             split="val", size=8)
    assert scenes.config.swappable() == ("colour", "shape")
    pairs = [_late_pair(scenes, m) for m in range(4)]
    assert len({tuple((o.colour, o.shape) for o in pair) for pair in pairs}) == 4


def test_replace_groups_are_unchanged_by_the_binding_option():
    # the default scenes are the calibration's: group_kind="replace" draws exactly what it drew before
    scenes = SyntheticScenes(SyntheticConfig(group_kind="replace"), split="test", size=4)
    assert scenes[0]["caption"] == SyntheticScenes(split="test", size=4)[0]["caption"]
    assert [(o.shape, o.colour, o.size) for o in scenes.objects(0)][:2] == [
        (o.shape, o.colour, o.size) for o in SyntheticScenes(split="test", size=4).objects(0)][:2]


def test_binding_knobs_are_validated():
    with pytest.raises(ValueError, match="set differing_objects=2 \\(got 1\\)"):
        SyntheticConfig(group_kind="binding")
    with pytest.raises(ValueError, match="group_kind must be one of \\('replace', 'binding'\\), got 'swap'"):
        SyntheticConfig(group_kind="swap")
    with pytest.raises(ValueError, match="only 4 variants of the differing objects exist for group_size 5"):
        SyntheticConfig(group_kind="binding", differing_objects=2, sizes=("small",), group_size=5)


def test_dense_scenes_count_past_twelve_in_digits_the_base_knows(tokenizer):
    from finelip_kit.data.synthetic import vocabulary_token_ids

    scenes = SyntheticScenes(SyntheticConfig(grid_size=8, min_objects=14, max_objects=20), split="test", size=40)
    counts = [len(scenes.objects(i)) for i in range(40)]
    assert min(counts) >= 14 and max(counts) <= 20
    record = scenes[0]
    assert record["short_caption"].startswith("A ") and f"with {counts[0]} shapes on a 8 by 8 grid." in record["short_caption"]
    known = set(vocabulary_token_ids())
    for r in scenes.records(range(8)):
        assert set(tokenizer.encode([r["caption"]])[0]) <= known
        assert r["late_token"] >= CLIP_TEXT_TOKENS
