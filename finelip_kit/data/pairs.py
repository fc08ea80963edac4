"""What a load returns: ``Pairs`` (image-caption pairs of one split), its ``LoadReport`` (what was
kept, skipped and why), and ``open_image``. Below the loaders (``datasets.py``, ``shards.py``)."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..limits import image_size_problem
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


def open_image(source: str | bytes, where: str = "") -> Image.Image:
    """Open an image file (or bytes) fully, as RGB; a clear error names the file on failure."""
    label = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as image:
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
