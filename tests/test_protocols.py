"""Issue 19, evaluation protocols: each paper's protocol by name, built here in the real on-disk
layouts and checked against an independent reading of what the reference code reads."""

import json
from pathlib import Path

import pytest
import torch

import fakes
from finelip_kit import create_model
from finelip_kit.data import load_pairs
from finelip_kit.data.protocols import DEFAULT_PROTOCOL, PROTOCOLS, protocols_table
from finelip_kit.evaluate import PUBLISHED, evaluate_retrieval, paper_table, published_table

DATA_DOCS = Path(__file__).resolve().parents[1] / "docs" / "data.md"  # the manual's data page


def flickr_token(root: Path, images: int = 3, per_image: int = 5) -> Path:
    """Flickr30k's own results_20130124.token: ``<image>.jpg#<n>\\t<caption>``, 5 lines per image."""
    folder = root / "flickr30k-images"
    folder.mkdir(parents=True)
    lines = []
    for i in range(images):
        fakes.image(folder / f"{1000 + i}.jpg", i)
        lines += [f"{1000 + i}.jpg#{n}\tA caption {n} of picture {i} .\n" for n in range(per_image)]
    (root / "results_20130124.token").write_text("".join(lines))
    return root


def test_flickr30k_all_reads_every_line_of_the_token_file_as_the_official_code():
    import tempfile

    root = flickr_token(Path(tempfile.mkdtemp()))
    pairs = load_pairs("flickr30k-all", root=root)
    # the reference: every line a caption; the images are every 5th line's file, in order
    lines = (root / "results_20130124.token").read_text().splitlines()
    assert [pairs[i]["caption"] for i in range(len(pairs))] == [" ".join(line.split("\t")[1].split()) for line in lines]
    images = [lines[5 * i].split("\t")[0][:-2] for i in range(len(lines) // 5)]
    assert pairs.num_images == len(images) == 3
    assert [Path(pairs.hf[5 * i]["image"]).name for i in range(3)] == images
    assert pairs.protocol == "flickr30k-all"
    assert load_pairs("flickr30k", root=root).protocol == "flickr30k-all"  # the dataset's default protocol
    with pytest.raises(FileNotFoundError, match="split 'test' not found .* dataset_flickr30k.json"):
        load_pairs("flickr30k", split="test", root=root)


def test_flickr30k_karpathy_test_is_its_own_protocol(tmp_path):
    pairs = load_pairs("flickr30k", split="test", root=fakes.karpathy(tmp_path, "flickr30k"))
    assert pairs.protocol == "flickr30k-1k"
    assert load_pairs("flickr30k-1k", root=tmp_path).hf["caption"] == pairs.hf["caption"]


def coco_with_extra_captions(root: Path) -> Path:
    """captions_val2017.json with 5 captions per image, 7 for one, interleaved as the real file is."""
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    images, annotations = [], []
    counts = {0: 5, 1: 7, 2: 5}
    for i in counts:
        fakes.image(root / "val2017" / f"{i:012d}.jpg", i)
        images.append({"id": 30 + i, "file_name": f"{i:012d}.jpg"})
    for j in range(7):
        for i, count in counts.items():
            if j < count:
                annotations.append({"id": 1000 + 10 * i + j, "image_id": 30 + i, "caption": f"Picture {i}, caption {j}."})
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return root


def test_coco_val2017_first5_keeps_each_images_first_five_captions_in_file_order(tmp_path):
    root = coco_with_extra_captions(tmp_path)
    pairs = load_pairs("coco-val2017-first5", root=root)
    # the reference (torchvision's CocoCaptions then captions[0:5]): per image, annotations in file order
    data = json.loads((root / "annotations" / "captions_val2017.json").read_text())
    expected = {}
    for annotation in data["annotations"]:
        expected.setdefault(annotation["image_id"], []).append(annotation["caption"])
    reference = sorted(c for captions in expected.values() for c in captions[0:5])
    assert sorted(pairs.hf["caption"]) == reference and len(pairs) == 15
    assert pairs.protocol == "coco-val2017-first5"
    assert pairs.report.notes == {"caption beyond an image's first 5 left out (the protocol)": 2}
    assert pairs.report.skipped == 0
    every = load_pairs("coco", split="val2017", root=root)
    assert len(every) == 17 and every.protocol == "coco-val2017"
    assert load_pairs("coco", root=root).protocol == "coco-val2017-first5"  # the default is the paper's
    with pytest.raises(FileNotFoundError, match="coco split 'test' not found .* val2017-first5"):
        load_pairs("coco", split="test", root=root)


def dci_with_an_empty_extra(root: Path) -> Path:
    fakes.dci(root)
    base = root / "densely_captioned_images" / "annotations"
    annotation = json.loads((base / "sa_1.json").read_text())
    annotation["extra_caption"] = "  "
    (base / "sa_1.json").write_text(json.dumps(annotation))
    return root


def test_dci_long_is_extra_caption_only_without_the_empty_ones_and_reads_dci_long_csv(tmp_path):
    root = dci_with_an_empty_extra(tmp_path)
    long = load_pairs("dci-long", root=root)
    assert len(long) == 3 and long.protocol == "dci-long"
    assert long.hf["caption"] == [" ".join(fakes.CAPTIONS[i].split()) for i in (0, 2, 3)]
    assert long.report.notes == {"image without an extra_caption left out (the long-DCI protocol)": 1}
    everything = load_pairs("dci", root=root)  # the kit's: short + extra, every image
    assert len(everything) == 4 and everything.protocol == "dci"
    assert everything.hf["caption"][1] == "Short caption 1."
    # TULIP's dci_long.csv: tab-separated, open_clip's filepath / title columns, absolute paths of its machine
    photos = root / "densely_captioned_images" / "photos"
    rows = ["filepath\ttitle"] + [f"/home/someone/dci/photos/sa_{i}.jpg\t{fakes.CAPTIONS[i]}" for i in (0, 2, 3)]
    (tmp_path / "dci_long.csv").write_text("\n".join(rows) + "\n")
    shipped = load_pairs(tmp_path / "dci_long.csv", image_root=photos)
    assert shipped.hf["caption"] == long.hf["caption"]
    assert [Path(p).name for p in shipped.hf["image"]] == [Path(p).name for p in long.hf["image"]]


def test_urban1k_reads_the_first_line_of_each_caption_file_as_long_clips_loader(tmp_path):
    root = fakes.urban1k(tmp_path, n=3, zipped=False)
    captions = sorted((root / "Urban1k" / "caption").glob("*.txt"))
    captions[1].write_text("The first line is the caption.\nA second line the reference loader never reads.\n")
    pairs = load_pairs("urban1k", root=root)
    # the reference: open(caption).readlines()[0]
    reference = [" ".join(path.read_text().splitlines(keepends=True)[0].split()) for path in captions]
    assert pairs.hf["caption"] == reference
    assert pairs.report.notes == {"caption file has more lines than the first: only the first is kept (Long-CLIP's loader)": 1}
    assert pairs.protocol == "urban1k"


def test_every_protocol_names_a_loader_split_and_every_published_number_a_protocol():
    assert set(DEFAULT_PROTOCOL.values()) <= set(PROTOCOLS)
    assert {p for _, _, p, *_ in PUBLISHED} <= set(PROTOCOLS)
    assert list(protocols_table().index) == list(PROTOCOLS)
    assert set(published_table("coco")["protocol"]) == {"coco-val2017-first5"}
    section = DATA_DOCS.read_text()
    for name in PROTOCOLS:
        assert f"`{name}`" in section, f"protocol {name} is not in docs/data.md"


def test_a_protocol_and_a_different_split_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="protocol 'dci-long' is dci split 'long'; got split='all' too"):
        load_pairs("dci-long", split="all", root=tmp_path)


def test_every_printed_number_carries_its_protocol(tmp_path, capsys):
    from finelip_kit.cli import main

    root = coco_with_extra_captions(tmp_path / "coco")
    torch.manual_seed(0)
    create_model("tiny", **{"atrm_k": 4}).save_pretrained(tmp_path / "model")
    out = tmp_path / "r.json"
    assert main(["eval", "--model", str(tmp_path / "model"), "--data", "coco", "--data-root", str(root),
                 "--modes", "global", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "protocol coco-val2017-first5 (15 pairs)" in printed
    assert "note: 2 x caption beyond an image's first 5 left out (the protocol)" in printed
    written = json.loads(out.read_text())
    assert written["protocol"] == "coco-val2017-first5"
    # the paper table: this run's column and Long-CLIP's COCO numbers share the protocol column
    pairs = load_pairs("coco", root=root)
    result = evaluate_retrieval(create_model("tiny", **{"atrm_k": 4}), pairs, modes=("global",))
    table = paper_table({"mine": result})
    assert table.loc["Long-CLIP B/16 (Long-CLIP paper)", ("coco-val2017-first5", "T2I", "R@1")] == 40.4
    assert not pd_isna(table.loc["this run", ("coco-val2017-first5", "T2I", "R@1")])
    # measured under another protocol: its own column, never beside the published one
    karpathy = paper_table({"coco-5k": result.metrics})
    assert ("coco-5k", "T2I", "R@1") in karpathy.columns and ("coco-val2017-first5", "T2I", "R@1") in karpathy.columns
    assert pd_isna(karpathy.loc["this run", ("coco-val2017-first5", "T2I", "R@1")])
    with pytest.raises(ValueError, match="measured under protocol 'coco-val2017-first5'; label it"):
        paper_table({"coco-5k": result})
    # a cut protocol says it is cut
    assert pairs.take(5).protocol == "coco-val2017-first5[:5 pairs]"


def pd_isna(value) -> bool:
    import pandas

    return bool(pandas.isna(value))


def test_a_run_evaluates_on_a_protocol_by_name_and_records_it(tmp_path):
    from finelip_kit.recipe import RunSpec, load_data, resolve

    root = coco_with_extra_captions(tmp_path / "coco")
    spec = resolve(RunSpec(settings={"data.eval_source": "coco-val2017-first5", "data.root": str(root),
                                     "eval.size": None, "eval.val_size": 0}))
    _, val, test = load_data(spec.data, spec.eval)
    assert val is None and len(test) == 15 and test.protocol == "coco-val2017-first5"
    clash = resolve(RunSpec(settings={"data.eval_source": "coco-val2017-first5", "data.root": str(root),
                                      "data.val_split": "val2017", "eval.val_size": None}))
    with pytest.raises(ValueError, match="is a protocol: one fixed set, which cannot be both the validation split"):
        load_data(clash.data, clash.eval)
