"""Bad data: every fixture is a dataset in a real layout with good records and exactly one bad
one. ``on_error="raise"`` must name the record and the reason; ``on_error="skip"`` must load
the good records and count the bad one under that reason. Nothing crashes, nothing is lost silently."""

import json
import struct
import zlib
from pathlib import Path

import pytest

import fakes
from finelip_kit.data import load_pairs


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` pixels (a decompression bomb to decode)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def two_images(root: Path) -> None:
    (root / "img").mkdir(parents=True, exist_ok=True)
    for i in range(3):
        fakes.image(root / "img" / f"{i}.png", i)


def good_rows() -> list[dict]:
    return [{"image": f"img/{i}.png", "caption": fakes.CAPTIONS[i], "image_id": f"id{i}"} for i in range(2)]


def jsonl_with(bad) -> callable:
    """Own JSONL: two good lines, then ``bad`` (a dict, or raw bytes for the line)."""
    def build(root: Path):
        two_images(root)
        lines = [json.dumps(r).encode() for r in good_rows()]
        lines.append(bad if isinstance(bad, bytes) else json.dumps(bad).encode())
        path = root / "pairs.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        return str(path), {}
    return build


def jsonl_with_file(make) -> callable:
    """Own JSONL whose third record's image is the file ``make(root)`` writes."""
    def build(root: Path):
        two_images(root)
        name = make(root)
        rows = good_rows() + [{"image": name, "caption": fakes.CAPTIONS[2], "image_id": "bad"}]
        path = root / "pairs.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        return str(path), {}
    return build


def json_list_with(bad) -> callable:
    def build(root: Path):
        two_images(root)
        path = root / "pairs.json"
        path.write_text(json.dumps(good_rows() + [bad]))
        return str(path), {}
    return build


def csv_with(line: str) -> callable:
    def build(root: Path):
        two_images(root)
        rows = ["image,caption,image_id"] + [f"{r['image']},\"{r['caption']}\",{r['image_id']}" for r in good_rows()]
        path = root / "pairs.csv"
        path.write_text("\n".join(rows + [line]) + "\n")
        return str(path), {}
    return build


def write(root: Path, name: str, content: bytes) -> str:
    (root / "img" / name).write_bytes(content)
    return f"img/{name}"


def urban1k_with(mutate) -> callable:
    def build(root: Path):
        fakes.urban1k(root, n=3, zipped=False)
        mutate(root / "Urban1k")
        return "urban1k", {"root": str(root)}
    return build


def sharegpt4v_with(mutate) -> callable:
    def build(root: Path):
        path = fakes.sharegpt4v(root, n=4)
        items = json.loads(path.read_text())
        mutate(items)
        path.write_text(json.dumps(items))
        return "sharegpt4v", {"root": str(root), "split": "all"}
    return build


def karpathy_with(mutate) -> callable:
    def build(root: Path):
        fakes.karpathy(root, "flickr30k")
        path = root / "dataset_flickr30k.json"
        data = json.loads(path.read_text())
        mutate(data["images"])
        path.write_text(json.dumps(data))
        return "flickr30k", {"root": str(root), "split": "test"}
    return build


def coco_with(mutate) -> callable:
    def build(root: Path):
        fakes.coco_official(root)
        path = root / "annotations" / "captions_val2017.json"
        data = json.loads(path.read_text())
        mutate(data["annotations"])
        path.write_text(json.dumps(data))
        return "coco", {"root": str(root)}
    return build


def docci_with(line: bytes) -> callable:
    def build(root: Path):
        fakes.docci(root)
        manifest = root / "docci_descriptions.jsonlines"
        manifest.write_bytes(manifest.read_bytes() + line + b"\n")
        return "docci", {"root": str(root), "split": "test"}
    return build


def dci_with(content: str) -> callable:
    def build(root: Path):
        fakes.dci(root)
        base = root / "densely_captioned_images"
        (base / "annotations" / "bad.json").write_text(content)
        splits = json.loads((base / "splits.json").read_text())
        splits["test"].append("bad.json")
        (base / "splits.json").write_text(json.dumps(splits))
        return "dci", {"root": str(root), "split": "all"}
    return build


def _replace(items: list, index: int, value) -> None:
    items[index] = value


CAPTION = fakes.CAPTIONS[2]
FIXTURES = {
    # own JSONL: captions
    "jsonl caption missing": (jsonl_with({"image": "img/2.png"}), "caption missing or not text"),
    "jsonl caption empty": (jsonl_with({"image": "img/2.png", "caption": ""}), "empty or whitespace-only caption"),
    "jsonl caption whitespace": (jsonl_with({"image": "img/2.png", "caption": " \n\t "}), "empty or whitespace-only"),
    "jsonl caption number": (jsonl_with({"image": "img/2.png", "caption": 5}), "caption missing or not text"),
    "jsonl caption list": (jsonl_with({"image": "img/2.png", "caption": ["a"]}), "caption missing or not text"),
    "jsonl caption null": (jsonl_with({"image": "img/2.png", "caption": None}), "caption missing or not text"),
    # own JSONL: images
    "jsonl image missing": (jsonl_with({"caption": CAPTION}), "no image for this caption"),
    "jsonl image empty string": (jsonl_with({"image": "", "caption": CAPTION}), "no image for this caption"),
    "jsonl image absent file": (jsonl_with({"image": "img/none.png", "caption": CAPTION}), "image file does not exist"),
    "jsonl image is a folder": (jsonl_with({"image": "img", "caption": CAPTION}), "image file does not exist"),
    "jsonl image number": (jsonl_with({"image": 5, "caption": CAPTION}), "image is not a path or image bytes"),
    "jsonl image list": (jsonl_with({"image": [1, 2], "caption": CAPTION}), "image is not a path or image bytes"),
    "jsonl image bool": (jsonl_with({"image": True, "caption": CAPTION}), "image is not a path or image bytes"),
    "jsonl image empty dict": (jsonl_with({"image": {}, "caption": CAPTION}), "no image for this caption"),
    "jsonl image dict bad path": (jsonl_with({"image": {"path": 5}, "caption": CAPTION}), "malformed record"),
    "jsonl image 0 bytes": (jsonl_with_file(lambda r: write(r, "empty.png", b"")), r"image is empty \(0 bytes\)"),
    "jsonl image truncated": (jsonl_with_file(lambda r: write(r, "cut.png", (r / "img/0.png").read_bytes()[:60])),
                              "image is corrupt or truncated"),
    "jsonl image is text": (jsonl_with_file(lambda r: write(r, "text.png", b"not an image at all")),
                            "image is corrupt or truncated"),
    "jsonl decompression bomb": (jsonl_with_file(lambda r: write(r, "bomb.png", png_header_claiming(20000, 20000))),
                                 "too large to decode safely"),
    "jsonl image one pixel tall": (jsonl_with_file(lambda r: write(r, "tall.png", png_header_claiming(1, 100_000))),
                                   r"image too large or too elongated"),  # 400 bytes; resized to 64 x 6.4M: 2.5 GB
    "jsonl image 100M pixels": (jsonl_with_file(lambda r: write(r, "big.png", png_header_claiming(10_000, 10_000))),
                                r"image too large or too elongated"),  # over FINELIP_MAX_IMAGE_PIXELS, under PIL's error
    "jsonl caption 200k characters": (jsonl_with({"image": "img/2.png", "caption": "word " * 40_000}),
                                      "caption too long"),
    # own JSONL: groups and lines
    "jsonl group text": (jsonl_with({"image": "img/2.png", "caption": CAPTION, "group": "abc"}), "group is not an integer id"),
    "jsonl group fraction": (jsonl_with({"image": "img/2.png", "caption": CAPTION, "group": 1.5}), "group is not an integer id"),
    "jsonl group bool": (jsonl_with({"image": "img/2.png", "caption": CAPTION, "group": True}), "group is not an integer id"),
    "jsonl line not JSON": (jsonl_with(b'{"image": "img/2.png", "caption": '), "line is not valid JSON"),
    "jsonl line not UTF-8": (jsonl_with(b'{"caption": "caf\xe9"}'), "line is not UTF-8 text"),
    "jsonl line is a list": (jsonl_with(b'["img/2.png", "a caption"]'), "line does not hold a JSON object"),
    "jsonl line is a string": (jsonl_with(b'"img/2.png"'), "line does not hold a JSON object"),
    "jsonl duplicate pair": (jsonl_with({**good_rows()[0]}), "duplicate pair"),
    "jsonl one id two images": (jsonl_with({"image": "img/2.png", "caption": CAPTION, "image_id": "id0"}),
                                "duplicate image id for two different images"),
    # own JSON list
    "json item number": (json_list_with(5), "record is not an object"),
    "json item null": (json_list_with(None), "record is not an object"),
    "json item string": (json_list_with("img/2.png"), "record is not an object"),
    "json caption object": (json_list_with({"image": "img/2.png", "caption": {"text": "a"}}), "caption missing or not text"),
    # own CSV
    "csv extra fields": (csv_with(f'img/2.png,"{CAPTION}",id2,surplus'), "more fields than the header"),
    "csv missing fields": (csv_with("img/2.png"), "caption missing or not text"),
    "csv empty caption": (csv_with('img/2.png,"",id2'), "empty or whitespace-only caption"),
    "csv absent image": (csv_with(f'img/none.png,"{CAPTION}",id2'), "image file does not exist"),
    # Urban1k
    "urban1k image without caption": (urban1k_with(lambda b: fakes.image(b / "image" / "9.jpg", 9)), "no caption file"),
    "urban1k caption not UTF-8": (urban1k_with(lambda b: (b / "caption" / "2.txt").write_bytes(b"caf\xe9 au lait")),
                                  "caption file is not UTF-8 text"),
    "urban1k caption empty": (urban1k_with(lambda b: (b / "caption" / "2.txt").write_text("  ")),
                              "empty or whitespace-only caption"),
    "urban1k image truncated": (urban1k_with(lambda b: (b / "image" / "2.jpg").write_bytes(
        (b / "image" / "2.jpg").read_bytes()[:100])), "image is corrupt or truncated"),
    # ShareGPT4V
    "sharegpt4v item number": (sharegpt4v_with(lambda items: _replace(items, 1, 5)), "malformed record"),
    "sharegpt4v no gpt turn": (sharegpt4v_with(lambda items: items[1].update(conversations=[])),
                               "caption missing or not text"),
    "sharegpt4v image number": (sharegpt4v_with(lambda items: items[1].update(image=5)), "malformed record"),
    "sharegpt4v turn not object": (sharegpt4v_with(lambda items: items[1].update(conversations=["gpt"])),
                                   "malformed record"),
    # Karpathy splits
    "karpathy image without filename": (karpathy_with(lambda images: images[0].pop("filename")), "malformed record"),
    "karpathy sentence not object": (karpathy_with(lambda images: images[0]["sentences"].append("raw text")),
                                     "malformed record"),
    # COCO captions
    "coco annotation not object": (coco_with(lambda annotations: annotations.append(7)), "malformed record"),
    "coco annotation unknown image": (coco_with(lambda a: a.append({"id": 999, "image_id": 12345, "caption": CAPTION})),
                                      "no image for this caption"),
    # DOCCI, DCI
    "docci image file number": (docci_with(b'{"example_id": "x", "split": "test", "image_file": 5, "description": "d"}'),
                                "malformed record"),
    "docci line not JSON": (docci_with(b'{"example_id": '), "line is not valid JSON"),
    "dci annotation not JSON": (dci_with("{not json"), "annotation file unreadable"),
    "dci annotation a list": (dci_with("[1, 2]"), "malformed record"),
}


def test_the_suite_holds_at_least_forty_fixtures():
    assert len(FIXTURES) >= 40


@pytest.mark.parametrize("case", sorted(FIXTURES))
def test_a_bad_record_is_named_when_raising(tmp_path, case):
    build, reason = FIXTURES[case]
    source, options = build(tmp_path)
    with pytest.raises(ValueError, match=reason) as error:
        load_pairs(source, on_error="raise", **options)
    assert "on_error='skip'" in str(error.value)  # and says how to go on


@pytest.mark.parametrize("case", sorted(FIXTURES))
def test_a_bad_record_is_counted_when_skipping(tmp_path, case):
    build, reason = FIXTURES[case]
    source, options = build(tmp_path)
    pairs = load_pairs(source, on_error="skip", **options)
    assert pairs.report.skipped == 1, str(pairs.report)
    assert any(__import__("re").search(reason, r) for r in pairs.report.reasons), str(pairs.report)
    assert pairs.report.loaded == len(pairs) >= 2
    assert all(pairs[i]["image"].mode == "RGB" for i in range(len(pairs)))  # the kept ones all open


def test_input_limits_are_checked_before_decoding_and_are_configurable(tmp_path, monkeypatch):
    from finelip_kit import get_tokenizer
    from finelip_kit.data import open_image
    from finelip_kit.limits import image_size_problem

    tall = png_header_claiming(1, 100_000)
    with pytest.raises(ValueError, match=r"1 x 100000 pixels: aspect ratio 100,000, more than the 20 allowed "
                                         r"\(FINELIP_MAX_ASPECT_RATIO\)"):
        open_image(tall, "record 3")
    monkeypatch.setenv("FINELIP_MAX_ASPECT_RATIO", "200000")
    assert image_size_problem(1, 100_000) is None  # raised on purpose: the limit is the user's to set
    monkeypatch.setenv("FINELIP_MAX_ASPECT_RATIO", "ten")
    with pytest.raises(ValueError, match="FINELIP_MAX_ASPECT_RATIO='ten' is not a number"):
        image_size_problem(10, 10)
    monkeypatch.delenv("FINELIP_MAX_ASPECT_RATIO")
    tokenizer = get_tokenizer(context_length=77)
    with pytest.raises(ValueError, match=r"text 1 of 2 is refused: caption of 50,000,000 characters, more than the "
                                         r"100,000 allowed \(FINELIP_MAX_CAPTION_CHARS"):
        tokenizer(["a dog", "x" * 50_000_000])  # before the fix: about a minute and 6 GB
    monkeypatch.setenv("FINELIP_MAX_CAPTION_CHARS", "10")
    with pytest.raises(ValueError, match="caption of 14 characters"):
        tokenizer(["a dog on a mat"])


def test_a_data_path_that_is_not_a_file_or_folder_is_refused_not_read(tmp_path):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "pairs.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"--data .*pairs.jsonl' is neither a regular file nor a folder"):
        load_pairs(str(fifo))
    with pytest.raises(ValueError, match=r"root .* is neither a regular file nor a folder"):
        load_pairs("urban1k", root=str(fifo))
    # the CLI too, in a process of its own: before the fix it blocked on the FIFO for ever
    done = subprocess.run([sys.executable, "-m", "finelip_kit.cli", "eval", "--model", "tiny", "--data", str(fifo)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "neither a regular file nor a folder" in done.stderr
