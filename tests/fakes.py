"""Tiny fakes of every dataset layout the kit reads, written in the real on-disk formats."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

CAPTIONS = [
    "A red cube on a wooden table. Behind it a blue sphere rests against a wall painted green.",
    "Two cats sleep on a sofa. The left one is grey, the right one is striped orange and white.",
    "A street at night with wet asphalt. Neon signs in pink and cyan reflect in the puddles.",
    "A bowl of fruit: three lemons, a green apple and a bunch of purple grapes on a white plate.",
]


def image(path: Path, seed: int, size=(40, 32), mode="RGB") -> Path:
    rng = np.random.default_rng(seed)
    array = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    Image.fromarray(array, "RGB").convert(mode).save(path)
    return path


def urban1k(root: Path, n: int = 4, zipped: bool = True) -> Path:
    base = root / "Urban1k"
    (base / "image").mkdir(parents=True)
    (base / "caption").mkdir()
    for i in range(n):
        image(base / "image" / f"{i + 1}.jpg", i)
        (base / "caption" / f"{i + 1}.txt").write_text(CAPTIONS[i % len(CAPTIONS)])
    if not zipped:
        return root
    archive = root / "Urban1k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(base.rglob("*")):
            z.write(path, path.relative_to(root).as_posix())
    return archive


def docci(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    rows = []
    for i, split in enumerate(["train", "test", "test", "qual_dev", "test"]):
        name = f"{split}_{i:05d}.jpg"
        image(root / "images" / name, i)
        rows.append({"example_id": f"{split}_{i:05d}", "split": split, "image_file": name,
                     "description": CAPTIONS[i % len(CAPTIONS)]})
    (root / "docci_descriptions.jsonlines").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def dci(root: Path) -> Path:
    base = root / "densely_captioned_images"
    (base / "annotations").mkdir(parents=True)
    (base / "photos").mkdir()
    splits = {"train": [], "valid": [], "test": []}
    for i, split in enumerate(["train", "valid", "test", "test"]):
        name = f"sa_{i}.json"
        image(base / "photos" / f"sa_{i}.jpg", i)
        annotation = {"image": f"sa_{i}.jpg", "short_caption": f"Short caption {i}.",
                      "extra_caption": CAPTIONS[i], "mask_data": {}}
        (base / "annotations" / name).write_text(json.dumps(annotation))
        splits[split].append(name)
    (base / "splits.json").write_text(json.dumps(splits))
    return root


def sharegpt4v(root: Path, n: int = 1003) -> Path:
    (root / "coco" / "train2017").mkdir(parents=True)
    items = []
    for i in range(n):
        name = f"coco/train2017/{i:012d}.jpg"
        if i < 3 or i >= n - 2:  # images only for the first and last few: enough for tests
            image(root / name, i, size=(16, 16))
        items.append({"id": str(i), "image": name, "conversations": [
            {"from": "human", "value": "<image>\nDescribe the image in detail."},
            {"from": "gpt", "value": CAPTIONS[i % len(CAPTIONS)] + f" Item {i}."}]})
    path = root / "share-captioner_coco_lcs_sam_1246k_1107.json"
    path.write_text(json.dumps(items))
    return path


def karpathy(root: Path, kind: str) -> Path:
    folder = root / ("flickr30k-images" if kind == "flickr30k" else "val2014")
    folder.mkdir(parents=True)
    images = []
    for i, split in enumerate(["test", "test", "train", "restval", "val"]):
        name = f"img_{i}.jpg"
        image(folder / name, i)
        entry = {"filename": name, "split": split, "imgid": i,
                 "sentences": [{"raw": f"{CAPTIONS[j % 4]} Variant {j}."} for j in range(5)]}
        if kind == "coco":
            entry.update(filepath="val2014", cocoid=1000 + i)
        images.append(entry)
    (root / f"dataset_{kind}.json").write_text(json.dumps({"images": images, "dataset": kind}))
    return root


def coco_official(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    images, annotations = [], []
    for i in range(3):
        image(root / "val2017" / f"{i:012d}.jpg", i)
        images.append({"id": i + 7, "file_name": f"{i:012d}.jpg"})
        for j in range(2):
            annotations.append({"id": 100 * i + j, "image_id": i + 7, "caption": f"{CAPTIONS[i]} ({j})"})
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return root


def own_jsonl(root: Path, n: int = 4) -> Path:
    (root / "img").mkdir(parents=True)
    lines = []
    for i in range(n):
        image(root / "img" / f"{i}.png", i)
        lines.append(json.dumps({"image": f"img/{i}.png", "caption": CAPTIONS[i % 4], "image_id": f"id{i}"}))
    path = root / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path
