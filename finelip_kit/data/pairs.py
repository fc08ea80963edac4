"""What a load returns: ``Pairs`` (image-caption pairs of one split), its ``LoadReport`` (what was
kept, skipped and why), and ``open_image``. Below the loaders (``datasets.py``, ``shards.py``)."""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from PIL import Image

from ..limits import caption_problem, image_size_problem
from .transforms import to_rgb


@dataclass
class LoadReport:
    """What a load kept and skipped, and why."""

    loaded: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # the first few skipped records, named
    notes: Counter = field(default_factory=Counter)  # what the protocol itself leaves out or trims (not defects)

    def skip(self, reason: str, where: str, detail: str = "") -> None:
        self.skipped += 1
        self.reasons[reason] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{where}: {reason}" + (f" ({detail})" if detail else ""))

    def __str__(self) -> str:
        lines = [f"loaded {self.loaded} pairs, skipped {self.skipped}"]
        lines += [f"  {count} x {reason}" for reason, count in self.reasons.most_common()]
        lines += [f"  e.g. {example}" for example in self.examples[:5]]
        lines += [f"  note: {count} x {note}" for note, count in self.notes.most_common()]
        return "\n".join(lines)


DUPLICATE_ID = "duplicate image id for two different images"


class ImageKeys:
    """The one duplicate-id rule, for every source (files, archives, shards): an image id names one
    image. Captions of one image share its id; a second, different image under an id it already
    names is a defect (retrieval would count either image as correct for both)."""

    def __init__(self) -> None:
        self._images: dict[str, str] = {}

    def problem(self, key: str, image: Any) -> tuple[str, str] | None:
        """(reason, detail) when ``key`` already names an image other than ``image``."""
        known = self._images.get(key)
        return (DUPLICATE_ID, f"id {key!r}") if known is not None and known != _identity(image) else None

    def add(self, key: str, image: Any) -> None:
        self._images.setdefault(key, _identity(image))


def _identity(image: Any) -> str:
    """A path names its file; bytes are named by their digest."""
    if isinstance(image, (bytes, bytearray)):
        return "sha1:" + hashlib.sha1(image).hexdigest()
    return "path:" + str(image)


class Pairs:
    """Image-caption pairs of one dataset split.

    ``hf`` is a ``datasets.Dataset`` with columns ``image`` (a path, or ``image_bytes``),
    ``caption``, ``short_caption``, ``image_id`` (int, one per distinct image) and
    ``image_key`` (the dataset's own id). ``pairs[i]`` gives a record dict with the
    image opened as RGB. Several captions per image share an ``image_id``.
    """

    def __init__(self, hf, report: LoadReport, name: str, protocol: str | None = None):
        self.hf, self.report, self.name = hf, report, name
        self.protocol = protocol or name  # the evaluation protocol these pairs are (data/protocols.py)

    def __len__(self) -> int:
        return len(self.hf)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.hf[int(index)]
        row["image"] = open_image(row.pop("image_bytes", None) or row["image"], f"{self.name} record {index}")
        return row

    @property
    def num_images(self) -> int:
        return len(set(self.hf["image_id"]))

    def take(self, n: int) -> "Pairs":
        """The first ``n`` pairs (all of them if there are fewer); a cut protocol is named as cut."""
        kept = min(n, len(self.hf))
        protocol = self.protocol if kept == len(self.hf) else f"{self.protocol}[:{kept} pairs]"
        return Pairs(self.hf.select(range(kept)), self.report, self.name, protocol)

    def __repr__(self) -> str:
        return (f"Pairs({self.name!r}, protocol {self.protocol!r}, {len(self)} pairs, {self.num_images} images, "
                f"skipped {self.report.skipped})")


@dataclass
class RawRecord:
    image: str | bytes | None
    caption: Any
    image_key: str
    where: str  # "file:line" or similar, for messages
    short_caption: str | None = None
    problem: tuple[str, str] | None = None  # (reason, detail): a defect found while reading
    group: int | None = None  # a hard-negative group (the synthetic benchmark written to disk)
    note: str | None = None  # the protocol trimmed this record (counted in the report's notes)
    left_out: bool = False  # the protocol itself leaves this record out (counted in the notes, not a defect)
    id_key: str | None = None  # what names this record's image, when not ``image_key`` (a shard's json image_id)


def validate_records(raw: Iterator[RawRecord], label: str, on_error: str, verify: str) -> Pairs:
    """The one validation pass every loader's raw records go through (files, archives, shards, the hub):
    captions, images, one image per image id; a defect raises naming the record, or is skipped and counted."""
    import datasets

    report = LoadReport()
    rows: list[dict[str, Any]] = []
    ids: dict[str, int] = {}
    images = ImageKeys()
    seen_pairs: set[tuple[str, str]] = set()
    for record in raw:
        if record.note:
            report.notes[record.note] += 1
        if record.left_out:
            continue
        key = record.id_key or record.image_key
        problem = record.problem or _caption_problem(record.caption)
        if problem is None:
            problem = images.problem(key, record.image)
        if problem is None and (key, record.caption) in seen_pairs:
            problem = ("duplicate pair (same image id and caption)", f"id {key!r}")
        if problem is None:
            problem = _image_problem(record.image, verify)
        if problem is not None:
            reason, detail = problem
            if on_error == "raise":
                raise ValueError(
                    f"{label}: {record.where}: {reason} ({detail}). Fix the record, or pass on_error='skip' to "
                    f"skip such records (they are counted in the returned report)"
                )
            report.skip(reason, record.where, detail)
            continue
        caption = " ".join(record.caption.split())
        images.add(key, record.image)
        seen_pairs.add((key, record.caption))
        image_id = ids.setdefault(key, len(ids))
        is_bytes = isinstance(record.image, (bytes, bytearray))
        rows.append(
            {
                "image": "" if is_bytes else str(record.image),
                "image_bytes": bytes(record.image) if is_bytes else None,
                "caption": caption,
                "short_caption": record.short_caption or first_sentence(caption),
                "image_id": image_id,
                "image_key": record.image_key,
                "group": record.group,
            }
        )
    report.loaded = len(rows)
    if not rows:
        raise ValueError(f"{label}: no usable pairs ({report})")
    hf = datasets.Dataset.from_list(rows)
    if all(r["image_bytes"] is None for r in rows):
        hf = hf.remove_columns("image_bytes")
    if any(r["group"] is None for r in rows):
        hf = hf.remove_columns("group")
    return Pairs(hf, report, label)


def first_sentence(caption: str) -> str:
    """The first sentence (how Long-CLIP derives short captions from ShareGPT4V's long ones)."""
    match = re.match(r"(.+?[.!?])(\s|$)", caption.strip(), flags=re.S)
    return (match.group(1) if match else caption).strip()


def _caption_problem(caption: Any) -> tuple[str, str] | None:
    if not isinstance(caption, str):
        return "caption missing or not text", f"got {type(caption).__name__}"
    if not caption.strip():
        return "empty or whitespace-only caption", repr(caption)
    too_long = caption_problem(caption)
    if too_long:
        return "caption too long", too_long
    return None


def _image_problem(image: str | bytes | None, verify: str) -> tuple[str, str] | None:
    if image is None or image == "":
        return "no image for this caption", "no image path in the record"
    if not isinstance(image, (str, Path, bytes, bytearray)):
        return "image is not a path or image bytes", f"got {type(image).__name__} {str(image)[:40]!r}"
    if isinstance(image, (bytes, bytearray)):
        if not image:
            return "image is empty (0 bytes)", "<bytes>"
    else:
        path = Path(image)
        if not path.is_file():
            return "image file does not exist", str(path)
        if path.stat().st_size == 0:
            return "image is empty (0 bytes)", str(path)
    if verify == "none":
        return None
    label = "<bytes>" if isinstance(image, (bytes, bytearray)) else str(image)
    try:
        with _quiet_bomb_warning(), Image.open(io.BytesIO(image) if isinstance(image, (bytes, bytearray)) else image) as opened:
            too_large = image_size_problem(*opened.size)  # the header's size, before decoding
            if too_large:
                return "image too large or too elongated", f"{label}: {too_large}"
            if verify == "full":
                opened.load()
            else:
                opened.verify()
    except Image.DecompressionBombError as error:
        return "image is too large to decode safely (decompression bomb?)", f"{label}: {error}"
    except (OSError, ValueError, SyntaxError) as error:
        return "image is corrupt or truncated", f"{label}: {error}"
    return None


@contextmanager
def _quiet_bomb_warning():
    """PIL warns on opening an image over its pixel threshold; the kit's own check (``limits.py``) decides."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def open_image(source: str | bytes, where: str = "") -> Image.Image:
    """Open an image file (or bytes) fully, as RGB; a clear error names the file on failure."""
    label = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        with _quiet_bomb_warning(), Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as image:
            too_large = image_size_problem(*image.size)  # from the header, before any pixel is decoded
            if too_large:
                raise ValueError(f"{where}: image {label!r} is refused: {too_large}")
            image.load()
            return to_rgb(image)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{where}: image file {label!r} does not exist") from error
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"{where}: image {label!r} could not be decoded ({error})") from error
    except ValueError as error:
        if "is refused:" in str(error):
            raise
        raise ValueError(f"{where}: image {label!r} could not be decoded ({error})") from error
