"""load_pairs on tiny fakes of every layout, offline; bad input raises or is counted."""

import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import fakes
from finelip_kit.config import VisionConfig
from finelip_kit.data import Collate, PairDataset, clip_transform, first_sentence, load_pairs


def test_urban1k_zip_and_folder(tmp_path):
    archive = fakes.urban1k(tmp_path / "u", n=4)
    pairs = load_pairs("urban1k", root=archive, cache_dir=tmp_path / "cache")
    assert len(pairs) == 4 and pairs.num_images == 4
    record = pairs[0]
    assert record["caption"] == fakes.CAPTIONS[0] and record["image"].mode == "RGB"
    assert record["short_caption"] == "A red cube on a wooden table."
    assert sorted(pairs.hf["image_key"]) == ["1", "2", "3", "4"]
    folder = load_pairs("Urban1k", root=tmp_path / "u", cache_dir=tmp_path / "cache")
    assert folder.hf["caption"] == pairs.hf["caption"]


def test_urban1k_zip_with_another_layout_is_named(tmp_path):
    bad = tmp_path / "Urban1k.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("pictures/1.jpg", b"x")
    with pytest.raises(ValueError, match=r"has a different layout: no entries under \['Urban1k/image/', 'Urban1k/caption/'\]; its top level holds \['pictures/'\]"):
        load_pairs("urban1k", root=bad, cache_dir=tmp_path / "cache")


def test_docci_split_filter(tmp_path):
    pairs = load_pairs("docci", split="test", root=fakes.docci(tmp_path))
    assert len(pairs) == 3 and sorted(pairs.hf["image_key"]) == ["test_00001", "test_00002", "test_00004"]
    assert len(load_pairs("docci", split="train", root=tmp_path)) == 1


def test_dci_long_caption_is_short_plus_extra(tmp_path):
    pairs = load_pairs("dci", split="all", root=fakes.dci(tmp_path))
    assert len(pairs) == 4
    first = pairs[0]
    assert first["caption"] == f"Short caption 0. {fakes.CAPTIONS[0]}"  # newline folded to a space
    assert first["short_caption"] == "Short caption 0."
    assert len(load_pairs("dci", split="test", root=tmp_path)) == 2
    with pytest.raises(ValueError, match="DCI split must be 'all', 'long' or one of"):
        load_pairs("dci", split="dev", root=tmp_path)


def test_sharegpt4v_first_1000_are_the_eval_split(tmp_path):
    path = fakes.sharegpt4v(tmp_path)
    pairs = load_pairs("sharegpt4v", split="eval", root=path, on_error="skip", verify="none")
    # Images exist for items 0-2 only (the fake keeps it small): 997 eval records skipped, counted.
    assert len(pairs) == 3 and pairs.report.skipped == 997
    assert pairs.report.reasons == {"image file does not exist": 997}
    assert pairs[0]["caption"].endswith("Item 0.")
    train = load_pairs("sharegpt4v", split="train", root=path, on_error="skip")
    assert train.hf["image_key"] == ["coco/train2017/000000001001.jpg", "coco/train2017/000000001002.jpg"]


@pytest.mark.parametrize("kind", ["coco", "flickr30k"])
def test_karpathy_splits_with_five_captions_per_image(tmp_path, kind):
    root = fakes.karpathy(tmp_path, kind)
    test = load_pairs(kind, split="test", root=root)
    assert len(test) == 10 and test.num_images == 2
    assert test.hf["image_id"] == [0] * 5 + [1] * 5
    assert len(load_pairs(kind, split="train", root=root)) == 10  # train + restval


def test_coco_official_annotations(tmp_path):
    pairs = load_pairs("coco", split="val2017", root=fakes.coco_official(tmp_path))
    assert len(pairs) == 6 and pairs.num_images == 3
    assert pairs.hf["image_key"][:2] == ["7", "7"]


def test_own_jsonl_csv_parquet_and_imagefolder(tmp_path):
    jsonl = fakes.own_jsonl(tmp_path / "own")
    pairs = load_pairs(jsonl)
    assert len(pairs) == 4 and pairs.hf["image_key"] == ["id0", "id1", "id2", "id3"]
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    csv_path = tmp_path / "own" / "pairs.csv"
    csv_path.write_text("image,caption,short_caption\n" + "".join(f'{r["image"]},"{r["caption"]}",short {i}\n' for i, r in enumerate(rows)))
    from_csv = load_pairs(csv_path)
    assert from_csv.hf["caption"] == pairs.hf["caption"] and from_csv.hf["short_caption"][1] == "short 1"
    import datasets

    with_bytes = datasets.Dataset.from_dict({"image": [str(tmp_path / "own" / r["image"]) for r in rows],
                                            "caption": [r["caption"] for r in rows]}).cast_column("image", datasets.Image())
    with_bytes.to_parquet(str(tmp_path / "own" / "pairs.parquet"))
    from_parquet = load_pairs(tmp_path / "own" / "pairs.parquet")
    assert from_parquet.hf["caption"] == pairs.hf["caption"]
    assert np.array_equal(np.asarray(from_parquet[2]["image"]), np.asarray(pairs[2]["image"]))
    folder = tmp_path / "folder"
    folder.mkdir()
    fakes.image(folder / "a.png", 1)
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "caption": "a picture"}) + "\n")
    assert load_pairs(folder).hf["caption"] == ["a picture"]


def test_hub_id_offline_fails_with_a_clear_message():
    with pytest.raises(OSError, match="could not load hub dataset 'google/docci'.*Offline"):
        load_pairs("google/docci")
    with pytest.raises(ValueError, match="needs root="):
        load_pairs("urban1k")
    with pytest.raises(FileNotFoundError, match="neither a known dataset"):
        load_pairs("no such thing here")


# ----------------------------------------------------------------------------- bad input
def broken_set(root):
    """One good record and one of each defect, in the own-data JSONL format."""
    (root / "img").mkdir(parents=True)
    good = fakes.image(root / "img" / "good.jpg", 0)
    truncated = root / "img" / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    (root / "img" / "empty.jpg").write_bytes(b"")
    (root / "img" / "corrupt.jpg").write_bytes(b"this is not an image at all")
    rows = [
        {"image": "img/good.jpg", "caption": "fine", "image_id": "g"},
        {"image": "img/truncated.jpg", "caption": "t", "image_id": "t"},
        {"image": "img/empty.jpg", "caption": "e", "image_id": "e"},
        {"image": "img/corrupt.jpg", "caption": "c", "image_id": "c"},
        {"image": "img/missing.jpg", "caption": "m", "image_id": "m"},
        {"image": "img/good.jpg", "caption": "   ", "image_id": "g"},
        {"image": "img/good.jpg", "caption": None, "image_id": "g"},
        {"image": "img/good.jpg", "caption": "fine", "image_id": "g"},
        {"image": "img/truncated.jpg", "caption": "other picture, same id", "image_id": "g"},
    ]
    lines = [json.dumps(r).encode() for r in rows] + [b'{"image": "img/good.jpg", "caption": "caf\xe9"}', b"{not json"]
    path = root / "broken.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_every_defect_is_skipped_and_counted(tmp_path):
    pairs = load_pairs(broken_set(tmp_path), on_error="skip")
    assert len(pairs) == 1 and pairs.report.loaded == 1 and pairs.report.skipped == 10
    assert pairs.report.reasons == {
        "image is corrupt or truncated": 2,
        "image is empty (0 bytes)": 1,
        "image file does not exist": 1,
        "empty or whitespace-only caption": 1,
        "caption missing or not text": 1,
        "duplicate pair (same image id and caption)": 1,
        "duplicate image id for two different images": 1,
        "line is not UTF-8 text": 1,
        "line is not valid JSON": 1,
    }
    examples = "\n".join(pairs.report.examples)
    assert "broken.jsonl:2: image is corrupt or truncated" in examples and "truncated.jpg" in examples
    assert "broken.jsonl:4: image is corrupt or truncated" in examples and "corrupt.jpg" in examples
    assert "loaded 1 pairs, skipped 10" in str(pairs.report)


def test_defects_raise_naming_record_and_file(tmp_path):
    path = broken_set(tmp_path)
    with pytest.raises(ValueError, match=r"broken.jsonl:2: image is corrupt or truncated \(.*truncated.jpg.*on_error='skip'"):
        load_pairs(path)


def test_urban1k_non_utf8_caption_and_missing_caption(tmp_path):
    fakes.urban1k(tmp_path, n=3, zipped=False)
    (tmp_path / "Urban1k" / "caption" / "2.txt").write_bytes(b"caf\xe9 au lait")
    (tmp_path / "Urban1k" / "caption" / "3.txt").unlink()
    pairs = load_pairs("urban1k", root=tmp_path, on_error="skip")
    assert len(pairs) == 1
    assert pairs.report.reasons == {"caption file is not UTF-8 text": 1, "no caption file for this image": 1}
    assert any("2.txt" in e for e in pairs.report.examples)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA", "1"])
def test_odd_image_modes_are_converted(tmp_path, mode):
    array = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
    base = Image.fromarray(array, "RGB")
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    if mode == "I;16":
        Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257)).save(path)
    else:
        base.convert(mode).save(path)
    (tmp_path / "p.jsonl").write_text(json.dumps({"image": path.name, "caption": "odd"}) + "\n")
    record = load_pairs(tmp_path / "p.jsonl")[0]
    assert record["image"].mode == "RGB" and record["image"].size == (24, 24)
    if mode in ("L", "I;16"):
        gray = np.asarray(base.convert("L"))
        assert np.abs(np.asarray(record["image"])[..., 0].astype(int) - gray).max() <= 1


def test_first_sentence():
    assert first_sentence("A cat. On a mat.") == "A cat."
    assert first_sentence("No full stop here") == "No full stop here"
    assert first_sentence("Dr. Who? Yes. ") == "Dr."  # simple rule, as Long-CLIP's split


def test_collate_tokenizes_and_counts_truncation(tmp_path):
    from finelip_kit import get_tokenizer

    pairs = load_pairs(fakes.own_jsonl(tmp_path))
    dataset = PairDataset(pairs, clip_transform(VisionConfig(image_size=32, patch_size=8, width=32, heads=2)))
    collate = Collate(get_tokenizer(context_length=20), short_captions=True)
    batch = collate([dataset[i] for i in range(4)])
    assert batch["images"].shape == (4, 3, 32, 32) and batch["images"].dtype == torch.float32
    assert batch["input_ids"].shape == (4, 20)
    lengths = batch["attention_mask"].sum(-1)
    assert (batch["input_ids"][torch.arange(4), lengths - 1] == 49407).all()
    assert batch["stats"] == {"truncated": 4, "captions": 4}
    assert batch["image_ids"].tolist() == [0, 1, 2, 3]
    assert "short_input_ids" in batch and "groups" not in batch


@pytest.mark.parametrize("shape", [(64, 64), (48, 80), (200, 100)])
def test_clip_transform_equals_resize_crop_normalise(shape):
    from torchvision.transforms import v2

    config = VisionConfig(image_size=64, patch_size=8, width=32, heads=2)
    reference = v2.Compose([
        v2.PILToTensor(),
        v2.Resize(64, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(64),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(config.mean), std=list(config.std)),
    ])
    image = Image.fromarray((np.random.default_rng(0).random((*shape, 3)) * 255).astype(np.uint8))
    out = clip_transform(config)(image)
    assert out.shape == (3, 64, 64)
    torch.testing.assert_close(out, reference(image), atol=1e-5, rtol=0)
    assert clip_transform(config, train=True)(image).shape == (3, 64, 64)


def test_the_synthetic_benchmark_loads_by_name_like_every_source():
    from finelip_kit.data import KNOWN, SOURCES, SyntheticConfig, SyntheticScenes, source_info

    scenes = load_pairs("synthetic", split="val", size=12)
    assert isinstance(scenes, SyntheticScenes) and len(scenes) == 12 and scenes.split == "val"
    assert scenes[3]["caption"] == SyntheticScenes(split="val", size=12)[3]["caption"]
    assert len(load_pairs("synthetic")) == 2000 and load_pairs("synthetic").split == "test"  # the test split, whole
    assert load_pairs("synthetic", size=4, config={"group_size": 2}).config.group_size == 2
    assert load_pairs("synthetic", size=4, config=SyntheticConfig(seed=3)).config.seed == 3
    assert str(scenes.report) == "loaded 12 pairs, skipped 0"
    # the known-names list is derived from the one registry; the registry says what a source is
    assert KNOWN == ("urban1k", "docci", "dci", "sharegpt4v", "coco", "flickr30k") and set(SOURCES) == {"synthetic", *KNOWN}
    assert source_info("synthetic").generated and source_info("synthetic").grouped
    assert source_info("flickr30k-all") is SOURCES["flickr30k"] and not source_info("/data/mine.jsonl").generated
    with pytest.raises(ValueError, match="split must be one of"):
        load_pairs("synthetic", split="all")
    with pytest.raises(ValueError, match=r"config= applies to a generated source \(synthetic\); 'urban1k'"):
        load_pairs("urban1k", root="/nowhere", config={"seed": 1})
    with pytest.raises(ValueError, match="size must be a positive number of pairs or None"):
        load_pairs("synthetic", size=0)


def test_size_takes_the_first_pairs_of_any_source(tmp_path):
    from finelip_kit.data import SyntheticScenes, write_jsonl

    write_jsonl(SyntheticScenes(split="test", size=6), tmp_path / "own")
    full = load_pairs(tmp_path / "own" / "test.jsonl")
    first = load_pairs(tmp_path / "own" / "test.jsonl", size=4)
    assert len(full) == 6 and len(first) == 4
    assert [first[i]["caption"] for i in range(4)] == [full[i]["caption"] for i in range(4)]
