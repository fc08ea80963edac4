"""The one registry of data names and its one loader, ``load_pairs``, for every source the kit knows.

    scenes = load_pairs("synthetic", split="test", size=2000)       # the embedded benchmark (data/synthetic.py)
    pairs = load_pairs("urban1k", root="/data/Urban1k.zip")
    pairs = load_pairs("docci", split="test", root="/data/docci")
    pairs = load_pairs("flickr30k-all", root="/data/flickr30k")     # a protocol by name (data/protocols.py)
    pairs = load_pairs("/data/mine.jsonl", on_error="skip"); print(pairs.report)
    shards = load_pairs("wds:/data/shards/{000000..000099}.tar")     # streamed (data/shards.py)

Every loader yields raw records (an image file or bytes, a caption, an original image
key); one validation pass then checks each record — caption present and non-empty,
image file present, non-empty and decodable — and either raises naming the record and
the file (``on_error="raise"``) or skips it and counts it in ``pairs.report``
(``on_error="skip"``). Nothing is dropped silently. Odd image modes (grayscale, RGBA,
palette, CMYK, 16-bit) are converted when the image is read, never rejected.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zipfile
from collections import Counter
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from PIL import Image

from .pairs import LoadReport, Pairs, RawRecord, first_sentence, validate_records as _validate  # noqa: F401
from .protocols import DEFAULT_PROTOCOL, PROTOCOLS, protocol_name
from .synthetic import SyntheticConfig, SyntheticScenes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


# ----------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class DataSource:
    """What the kit knows about a data name, the one place a caller asks (never by comparing names).

    ``read``: the reader of its layout on disk, ``(root, split, image_root, cache_dir) -> raw records``;
    None for a generated source. ``config``: the config class of a generated source (made on the
    fly, no root; its fields are settings ``data.<field>``; sized by ``size=``). ``grouped``: its
    captions come in hard-negative groups (group batches, the binding probe). ``validation_split``:
    the split a run validates on whatever ``data.val_split`` says; ``train_split``: the split
    ``finelip shard`` writes when none is named (None: the dataset's default)."""

    name: str
    read: Callable[..., Iterator[RawRecord]] | None = None
    config: type | None = None
    grouped: bool = False
    validation_split: str | None = None
    train_split: str | None = None

    @property
    def generated(self) -> bool:
        return self.config is not None


OTHER = DataSource("other")  # a file or folder of your own, webdataset shards, a hub id


def source_info(name: str | Path) -> DataSource:
    """The registry's entry for ``name`` (a dataset, a protocol of one, ``synthetic``), else ``OTHER``."""
    key = str(name).lower().replace("_", "-")
    if key in PROTOCOLS:
        key = PROTOCOLS[key].dataset
    return SOURCES.get(key.replace("-", ""), OTHER)


# ----------------------------------------------------------------------------- the loader
def load_pairs(
    name_or_path: str | Path,
    split: str | None = None,
    root: str | Path | None = None,
    on_error: str = "raise",
    verify: str = "full",
    image_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    size: int | None = None,
    config: Any = None,
):
    """Image-caption pairs from the synthetic benchmark, a known dataset or evaluation protocol
    (``root`` = where it lies), a local file or folder of your own, or a hub id (online only).

    ``size``: the first ``size`` pairs (None: all; the synthetic benchmark: its split's size).
    ``config``: a generated source's config (``SyntheticConfig`` or a dict of its fields).

    ``split``: a split of the dataset; None: the dataset's default protocol (the one its
    published numbers used, ``protocols.DEFAULT_PROTOCOL``), ``"test"`` for your own files.
    A protocol name (``flickr30k-all``, ``coco-val2017-first5``, ``dci-long``, ...) sets both.
    ``on_error``: ``"raise"`` (default) or ``"skip"`` (counted in ``pairs.report``).
    ``verify``: ``"full"`` decodes every image once (catches truncated files), ``"header"``
    only opens it (fast, for huge sets: a broken image then fails when read), ``"none"``.
    ``image_root``: where relative image paths point (default: beside the annotation file).
    ``cache_dir``: where a zip is extracted (default ``~/.cache/finelip_kit``).
    ``wds:<shards>`` (``dir/{000000..000099}.tar``, a folder, one ``.tar``): webdataset shards,
    returned as ``ShardPairs`` for streaming; shards ``finelip shard`` wrote are trusted (their pairs
    were validated when written), others are scanned (``verify`` then decodes their samples too).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if verify not in ("full", "header", "none"):
        raise ValueError(f"verify must be 'full', 'header' or 'none', got {verify!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be a positive number of pairs or None (all), got {size!r}")
    name = str(name_or_path)
    source = source_info(name)  # a registered name wins over a file of that name, as for every dataset
    if config is not None and not source.generated:
        raise ValueError(f"config= applies to a generated source (synthetic); {name!r} is read as it is")
    if source.generated:  # made on the fly: it lies nowhere, so ``root`` (a run's, for its other data) is not used
        config = source.config(**config) if isinstance(config, dict) else config
        return SyntheticScenes(config, split="test" if split is None else split, size=size)
    pairs = _load_pairs(name, split, root, on_error, verify, image_root, cache_dir)
    return pairs.take(size) if size else pairs


def _load_pairs(name: str, split, root, on_error: str, verify: str, image_root, cache_dir):
    if name.startswith("wds:"):
        from .shards import ShardPairs, expand_urls

        if split is not None:
            raise ValueError(f"webdataset shards are one set: split={split!r} does not apply to {name!r}; "
                             f"name the shards of the split you want by their paths")
        return ShardPairs(expand_urls(name), name, on_error=on_error, verify=verify)
    key = name.lower().replace("_", "-")
    if key in PROTOCOLS and (key not in DEFAULT_PROTOCOL or split is None):
        protocol = PROTOCOLS[key]
        if split is not None and split != protocol.split:
            raise ValueError(f"protocol {key!r} is {protocol.dataset} split {protocol.split!r}; got split={split!r} too. "
                             f"Name the protocol alone, or the dataset {protocol.dataset!r} with a split")
        key, split = protocol.dataset, protocol.split
    key = key.replace("-", "")
    if key in KNOWN:
        if root is None:
            raise ValueError(f"load_pairs({name!r}) needs root= (where the dataset lies); see docs/data.md for each dataset's layout")
        if Path(root).exists():
            _regular(Path(root), "root")
        split = PROTOCOLS[DEFAULT_PROTOCOL[key]].split if split is None else split
        if key == "urban1k" and split == "test":
            split = "all"  # Urban1k is one evaluation set
        raw, label = SOURCES[key].read(Path(root), split, image_root, cache_dir), key
        pairs = _validate(raw, label, on_error, verify)
        pairs.protocol = protocol_name(key, split)
        return pairs
    split = "test" if split is None else split
    if Path(name).exists():
        _regular(Path(name), "--data")
        raw, label = _own_data(Path(name), split, image_root), Path(name).name
    elif re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        return _hub(name, split, on_error, verify)
    else:
        raise FileNotFoundError(
            f"{name!r} is neither a known dataset ({', '.join(KNOWN)}), an evaluation protocol "
            f"({', '.join(PROTOCOLS)}), an existing path, nor a hub id (org/name)"
        )
    return _validate(raw, label, on_error, verify)


def _regular(path: Path, what: str) -> Path:
    """``path`` if it is a regular file or a folder; a FIFO, device or socket would block or never end."""
    if not (path.is_file() or path.is_dir()):
        raise ValueError(f"{what} {str(path)!r} is neither a regular file nor a folder (a FIFO, device or socket?); "
                         f"name the data's file or folder")
    return path


# ----------------------------------------------------------------------------- layouts
def _read_text(path: Path) -> tuple[str | None, tuple[str, str] | None]:
    if not path.is_file():
        return None, ("caption file is not a regular file", str(path))
    try:
        return path.read_bytes().decode("utf-8"), None
    except UnicodeDecodeError as error:
        return None, ("caption file is not UTF-8 text", f"{path}: {error.reason} at byte {error.start}")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {str(path)!r} does not exist")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{str(path)!r} is not UTF-8 text ({error.reason} at byte {error.start})") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not valid JSON (line {error.lineno}: {error.msg})") from error


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, tuple[str, str] | None]]:
    """(line number, object or None, (reason, detail) or None) for each non-blank line."""
    _regular(path, "annotation file")
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as error:
            yield number, None, ("line is not UTF-8 text", f"{error.reason} at byte {error.start}")
            continue
        except json.JSONDecodeError as error:
            yield number, None, ("line is not valid JSON", error.msg)
            continue
        if not isinstance(row, dict):
            yield number, None, ("line does not hold a JSON object", type(row).__name__)
            continue
        yield number, row, None


def _urban1k(root: Path, split: str, image_root, cache_dir) -> Iterator[RawRecord]:
    """``Urban1k.zip`` or its extraction: ``Urban1k/image/*.jpg`` + ``Urban1k/caption/*.txt`` by stem.
    The caption is the file's first line, as Long-CLIP's loader reads it (``readlines()[0]``);
    files with more lines are counted in the report's notes."""
    if split != "all":
        raise ValueError(f"Urban1k is one evaluation set: split must be 'all' (or 'test'), got {split!r}")
    base = _extract_if_zip(root, cache_dir, expect=("Urban1k/image/", "Urban1k/caption/"))
    if (base / "Urban1k").is_dir():
        base = base / "Urban1k"
    images_dir, captions_dir = base / "image", base / "caption"
    if not images_dir.is_dir() or not captions_dir.is_dir():
        raise FileNotFoundError(
            f"Urban1k layout not found under {str(root)!r}: expected Urban1k/image/*.jpg and Urban1k/caption/*.txt"
        )
    images = {p.stem: p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    captions = {p.stem: p for p in captions_dir.iterdir() if p.suffix == ".txt"}
    for stem in sorted(set(images) | set(captions)):
        where = f"Urban1k item {stem!r}"
        if stem not in captions:
            yield RawRecord(images[stem], None, stem, where, problem=("no caption file for this image", str(images[stem])))
            continue
        text, problem = _read_text(captions[stem])
        lines = text.splitlines() if text else []
        more = len([line for line in lines[1:] if line.strip()])
        yield RawRecord(images.get(stem), lines[0] if lines else text, stem, where, problem=problem,
                        note="caption file has more lines than the first: only the first is kept (Long-CLIP's loader)"
                        if more else None)


def _docci(root: Path, split: str, image_root, cache_dir) -> Iterator[RawRecord]:
    """``docci_descriptions.jsonlines`` (example_id, split, image_file, description) + ``images/``."""
    manifest = root / "docci_descriptions.jsonlines"
    if not manifest.is_file():
        raise FileNotFoundError(f"DOCCI layout not found: {str(manifest)!r} does not exist")
    images = Path(image_root) if image_root else root / "images"
    for number, row, problem in _read_jsonl(manifest):
        where = f"{manifest.name}:{number}"
        if problem:
            yield RawRecord(None, None, f"line{number}", where, problem=problem)
            continue
        if row.get("split") != split:
            continue
        try:
            image = images / row["image_file"] if row.get("image_file") else None
        except TypeError as error:
            yield _malformed(where, error)
            continue
        yield RawRecord(image, row.get("description"), str(row.get("example_id", f"line{number}")), where)


def _dci(root: Path, split: str, image_root, cache_dir) -> Iterator[RawRecord]:
    """DCI: ``densely_captioned_images/{splits.json, annotations/*.json, photos/}``.
    ``split="all"`` (protocol ``dci``): every image, caption = ``short_caption`` + newline +
    ``extra_caption``; ``split="long"`` (protocol ``dci-long``, TULIP's): every image, caption =
    ``extra_caption`` alone, images without one left out (counted in the report's notes);
    or a splits.json key (short + extra)."""
    base = root / "densely_captioned_images" if (root / "densely_captioned_images").is_dir() else root
    splits = _read_json(base / "splits.json")
    if split in ("all", "long"):
        files = [f for names in splits.values() for f in names]
    elif split in splits:
        files = splits[split]
    else:
        raise ValueError(f"DCI split must be 'all', 'long' or one of {sorted(splits)}, got {split!r}")
    photos = Path(image_root) if image_root else base / "photos"
    for name in files:
        where = f"annotations/{name}"
        try:
            annotation = _read_json(base / "annotations" / name)
        except (FileNotFoundError, ValueError) as error:
            yield RawRecord(None, None, name, where, problem=("annotation file unreadable", str(error)))
            continue
        try:
            short, extra = annotation.get("short_caption"), annotation.get("extra_caption")
            caption = f"{short}\n{extra}" if isinstance(short, str) and isinstance(extra, str) else short
            image = photos / annotation["image"] if annotation.get("image") else None
        except (AttributeError, TypeError) as error:
            yield _malformed(where, error)
            continue
        if split == "long":
            if not (isinstance(extra, str) and extra.strip()):
                yield RawRecord(image, None, name, where, left_out=True,
                                note="image without an extra_caption left out (the long-DCI protocol)")
                continue
            caption = extra
        yield RawRecord(image, caption, str(annotation.get("image", name)), where,
                        short_caption=short if isinstance(short, str) else None)


def _sharegpt4v(root: Path, split: str, image_root, cache_dir) -> Iterator[RawRecord]:
    """LLaVA-style JSON list: ``image`` (relative path) + ``conversations``; caption = the first gpt turn.
    ``split``: ``"eval"`` = the first 1000 (ShareGPT4V-1k), ``"train"`` = the rest, ``"all"``."""
    path = root if root.is_file() else next(iter(sorted(root.glob("*.json"))), root / "sharegpt4v.json")
    items = _read_json(path)
    if not isinstance(items, list):
        raise ValueError(f"{str(path)!r} must hold a JSON list of records")
    chosen = {"eval": items[:1000], "train": items[1000:], "all": items}.get(split)
    if chosen is None:
        raise ValueError(f"ShareGPT4V split must be 'eval', 'train' or 'all', got {split!r}")
    base = Path(image_root) if image_root else path.parent
    for number, item in enumerate(chosen):
        where = f"{path.name}[{number + (1000 if split == 'train' else 0)}]"
        try:
            turns = item.get("conversations") or []
            caption = next((t.get("value") for t in turns if t.get("from") == "gpt"), None)
            image = base / item["image"] if item.get("image") else None
            yield RawRecord(image, caption, str(item.get("image") or item.get("id") or number), where)
        except (AttributeError, KeyError, TypeError) as error:
            yield _malformed(where, error)


def _karpathy_or_coco(kind: str):
    def load(root: Path, split: str, image_root, cache_dir) -> Iterator[RawRecord]:
        images = Path(image_root) if image_root else root
        if kind == "flickr30k" and split == "all":
            token = root if root.is_file() else root / "results_20130124.token"
            if not token.is_file():
                raise FileNotFoundError(f"flickr30k split 'all' (protocol flickr30k-all) reads results_20130124.token; "
                                        f"{str(token)!r} does not exist")
            yield from _flickr_token(token, Path(image_root) if image_root else token.parent)
            return
        official = sorted(root.glob("annotations/captions_*.json")) + sorted(root.glob("captions_*.json"))
        base, _, first = split.partition("-first")
        named = [p for p in official if p.stem == f"captions_{base}"]
        if kind == "coco" and named:
            limit = int(first) if first.isdigit() else None
            if first and limit is None:
                raise ValueError(f"COCO split {split!r}: write <annotation split>-first<N>, e.g. val2017-first5")
            yield from _coco_official(named[0], images, limit)
            return
        karpathy = root / f"dataset_{kind}.json"
        if karpathy.is_file():
            yield from _karpathy(karpathy, split, images, kind)
            return
        raise FileNotFoundError(
            f"{kind} split {split!r} not found under {str(root)!r}: expected the Karpathy split file dataset_{kind}.json"
            + (" or annotations/captions_<split>.json (val2017, val2017-first5: the official FineLIP / Long-CLIP "
               "protocol)" if kind == "coco" else " or, for split 'all', results_20130124.token")
        )

    return load


def _flickr_token(path: Path, image_root: Path) -> Iterator[RawRecord]:
    """Flickr30k's own caption file (``<image>.jpg#<n>\t<caption>`` per line): every image and
    caption, as the official FineLIP / Long-CLIP evaluation reads it."""
    folder = image_root / "flickr30k-images" if (image_root / "flickr30k-images").is_dir() else image_root
    text, problem = _read_text(path)
    if problem:
        raise ValueError(f"{str(path)!r}: {problem[0]} ({problem[1]})")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        name, tab, caption = line.partition("\t")
        if not tab:
            yield RawRecord(None, None, where, where, problem=("line is not <image>#<n><tab><caption>", line[:60]))
            continue
        image = name.rsplit("#", 1)[0]
        yield RawRecord(folder / image, caption, image, where)


def _karpathy(path: Path, split: str, image_root: Path, kind: str) -> Iterator[RawRecord]:
    """Karpathy split file: images with ``split``, ``filepath``/``filename`` and 5 ``sentences``."""
    images = _read_json(path).get("images", [])
    wanted = {"train": ("train", "restval")}.get(split, (split,))
    folder = image_root / "flickr30k-images" if kind == "flickr30k" and (image_root / "flickr30k-images").is_dir() else image_root
    for index, item in enumerate(images):
        try:
            if item.get("split") not in wanted:
                continue
            file = folder / item.get("filepath", "") / item["filename"]
            key = str(item.get("cocoid", item.get("imgid", item["filename"])))
            sentences = list(item.get("sentences", []))
        except (AttributeError, KeyError, TypeError) as error:
            yield _malformed(f"{path.name} images[{index}]", error)
            continue
        for number, sentence in enumerate(sentences):
            where = f"{path.name} image {key} sentence {number}"
            if not isinstance(sentence, dict):
                yield _malformed(where, TypeError(f"sentence is {type(sentence).__name__}, not an object"))
                continue
            yield RawRecord(file, sentence.get("raw"), key, where)


def _coco_official(path: Path, image_root: Path, first: int | None = None) -> Iterator[RawRecord]:
    """Official COCO captions: ``images`` (id, file_name) + ``annotations`` (image_id, caption);
    ``first``: only each image's first ``first`` captions in the file's order (torchvision's
    ``CocoCaptions`` order, which the official FineLIP / Long-CLIP code slices ``[0:5]``)."""
    data = _read_json(path)
    files = {img["id"]: img["file_name"] for img in data.get("images", [])
             if isinstance(img, dict) and "id" in img and isinstance(img.get("file_name"), str)}
    folder_name = path.stem.replace("captions_", "")
    folder = image_root / folder_name if (image_root / folder_name).is_dir() else image_root
    seen: Counter = Counter()
    for index, annotation in enumerate(data.get("annotations", [])):
        if not isinstance(annotation, dict):
            yield _malformed(f"{path.name} annotations[{index}]", TypeError(f"{type(annotation).__name__}, not an object"))
            continue
        image_id = annotation.get("image_id")
        seen[image_id] += 1
        if first is not None and seen[image_id] > first:
            yield RawRecord(None, None, str(image_id), f"{path.name} annotation {annotation.get('id')}", left_out=True,
                            note=f"caption beyond an image's first {first} left out (the protocol)")
            continue
        file = folder / files[image_id] if isinstance(image_id, (int, str)) and image_id in files else None
        yield RawRecord(file, annotation.get("caption"), str(image_id), f"{path.name} annotation {annotation.get('id')}")


def _malformed(where: str, error: Exception) -> RawRecord:
    """A record that could not be read from its layout: reported like any other defect."""
    return RawRecord(None, None, where, where, problem=("malformed record", f"{type(error).__name__}: {error}"))


def _own_data(path: Path, split: str, image_root) -> Iterator[RawRecord]:
    """Your own pairs: JSONL / JSON list / CSV / TSV / parquet with ``image`` + ``caption`` (+ ``short_caption``,
    ``image_id``), open_clip's tab-separated ``filepath`` + ``title`` (e.g. ``dci_long.csv``), or a folder
    with ``metadata.jsonl`` (``file_name`` + ``caption``). Paths are relative to the file's folder (or
    ``image_root``); an absolute path that does not exist is looked up by its file name under ``image_root``."""
    if path.is_dir():
        metadata = path / "metadata.jsonl"
        if not metadata.is_file():
            raise FileNotFoundError(f"folder {str(path)!r} has no metadata.jsonl (file_name + caption per line)")
        path = metadata
    base = Path(image_root) if image_root else path.parent
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".jsonlines"):
        rows = ((f"{path.name}:{n}", row, problem) for n, row, problem in _read_jsonl(path))
    elif suffix == ".json":
        data = _read_json(path)
        if not isinstance(data, list):
            raise ValueError(f"{str(path)!r} must hold a JSON list of records")
        rows = ((f"{path.name}[{n}]", row, None) for n, row in enumerate(data))
    elif suffix in (".csv", ".tsv", ".parquet"):
        rows = ((f"{path.name} row {n + 2 if suffix != '.parquet' else n}", row, None) for n, row in enumerate(_tabular(path)))
    else:
        raise ValueError(f"unsupported file type {suffix!r} for {str(path)!r}: use .jsonl, .json, .csv, .tsv or .parquet")
    for where, row, problem in rows:
        if problem is None and not isinstance(row, dict):
            problem = ("record is not an object with image and caption", f"got {type(row).__name__}")
        if problem is None and None in row:  # csv.DictReader puts fields beyond the header under None
            problem = ("row has more fields than the header", f"extra {row[None]!r}")
        if problem:
            yield RawRecord(None, None, where, where, problem=problem)
            continue
        image = row.get("image", row.get("file_name", row.get("filepath")))  # filepath / title: open_clip's CSV
        try:
            if isinstance(image, dict):  # a datasets Image feature written to parquet: {"bytes", "path"}
                image = image.get("bytes") or (base / image["path"] if image.get("path") else None)
            elif isinstance(image, str) and image:
                image = Path(image) if os.path.isabs(image) else base / image
                if image.is_absolute() and image_root and not image.exists():
                    image = Path(image_root) / image.name  # a shipped file's absolute paths: found under image_root
        except TypeError as error:
            yield _malformed(where, error)
            continue
        key = row.get("image_id")
        key = str(key) if key is not None else (str(image) if not isinstance(image, (bytes, bytearray)) else where)
        group, problem = _group_id(row.get("group"))
        yield RawRecord(
            image, row.get("caption", row.get("title")), key, where, short_caption=row.get("short_caption"), group=group,
            problem=problem,
        )


def _group_id(value: Any) -> tuple[int | None, tuple[str, str] | None]:
    """A record's hard-negative group as an int (CSV gives strings), or the problem with it."""
    if value in (None, ""):
        return None, None
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        return None, ("group is not an integer id", repr(value))
    try:
        return int(value), None
    except (TypeError, ValueError):
        return None, ("group is not an integer id", repr(value)[:40])


def _tabular(path: Path) -> list[dict[str, Any]]:
    import datasets

    if path.suffix.lower() in (".csv", ".tsv"):
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{str(path)!r} is not UTF-8 text ({error.reason} at byte {error.start})") from error
        header = text.split("\n", 1)[0]
        # open_clip's CSV convention (filepath<TAB>title, e.g. dci_long.csv) is tab-separated
        delimiter = "\t" if path.suffix.lower() == ".tsv" or ("\t" in header and "," not in header) else ","
        try:
            # Every value stays a string; fields beyond the header land under None (reported per row).
            return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))
        except csv.Error as error:
            raise ValueError(f"{str(path)!r} is not valid CSV ({error})") from error
    return datasets.load_dataset("parquet", data_files=str(path), split="train").to_list()


def _extract_if_zip(root: Path, cache_dir, expect: tuple[str, ...]) -> Path:
    if not (root.is_file() and zipfile.is_zipfile(root)):
        if not root.exists():
            raise FileNotFoundError(f"{str(root)!r} does not exist")
        return root
    with zipfile.ZipFile(root) as archive:
        names = archive.namelist()
        missing = [prefix for prefix in expect if not any(n.startswith(prefix) for n in names)]
        if missing:
            tops = sorted({n.split("/")[0] + ("/" if "/" in n else "") for n in names})[:10]
            raise ValueError(
                f"zip {str(root)!r} has a different layout: no entries under {missing}; its top level holds {tops}. "
                f"Expected {', '.join(expect)}"
            )
        target = Path(cache_dir or Path.home() / ".cache" / "finelip_kit") / f"{root.stem}-{root.stat().st_size}"
        if not (target / ".complete").is_file():
            archive.extractall(target)
            (target / ".complete").write_text("ok")
    return target


def _hub(name: str, split: str, on_error: str = "raise", verify: str = "full") -> Pairs:
    """A hub dataset (online only): the first image column and a caption-like column."""
    import datasets

    try:
        hf = datasets.load_dataset(name, split=split)
    except Exception as error:  # offline, missing, gated: all end here with one clear message
        raise OSError(
            f"could not load hub dataset {name!r} split {split!r} ({type(error).__name__}: {str(error).splitlines()[0]}). "
            f"Offline? Download it and pass its local path or a known name with root="
        ) from error
    image_column = next((c for c, f in hf.features.items() if isinstance(f, datasets.Image)), None)
    caption_column = next((c for c in ("caption", "description", "text", "long_caption") if c in hf.column_names), None)
    if image_column is None or caption_column is None:
        raise ValueError(f"hub dataset {name!r} has no image column and caption column I recognise: {hf.column_names}")
    records = (
        RawRecord(_image_bytes(row[image_column]), row[caption_column], str(i), f"{name}[{i}]") for i, row in enumerate(hf)
    )
    return _validate(records, name, on_error, verify)


def _image_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


SOURCES: dict[str, DataSource] = {
    "synthetic": DataSource("synthetic", config=SyntheticConfig, grouped=True, validation_split="val", train_split="train"),
    "urban1k": DataSource("urban1k", _urban1k),
    "docci": DataSource("docci", _docci),
    "dci": DataSource("dci", _dci),
    "sharegpt4v": DataSource("sharegpt4v", _sharegpt4v),
    "coco": DataSource("coco", _karpathy_or_coco("coco")),
    "flickr30k": DataSource("flickr30k", _karpathy_or_coco("flickr30k")),
}
KNOWN = tuple(name for name, source in SOURCES.items() if source.read is not None)  # the datasets read from disk
