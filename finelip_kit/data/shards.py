"""webdataset shards: write any pairs as ``.tar`` shards, stream them for training.

    report = write_shards(load_pairs("docci", root="/data/docci"), "shards/docci", shard_size=10_000)
    shards = load_pairs("wds:shards/docci/{000000..000004}.tar")     # or "wds:shards/docci/"
    Trainer(model, shards, config)                                  # streamed, split over ranks and workers

A shard is a plain tar in open_clip's / img2dataset's convention: per sample ``<key>.jpg``
(or ``.png`` / ``.webp``: the image's own bytes, not re-encoded), ``<key>.txt`` (the caption)
and ``<key>.json`` (the record's other fields: ``image_id``, ``image_key``, ``short_caption``,
``group``, ...). ``write_shards`` also writes ``shards.json`` (each shard's sample count and
size), so a load needs no scan; shards written by other tools are scanned once when loaded.

How an epoch is read (``ShardEpoch``): the shard order is shuffled per ``(seed, epoch)``; the
shuffled stream is cut into one contiguous range per rank (``batches_per_epoch · batch_size``
samples each: the last partial global batch, fewer than ``world · batch_size`` samples, is left
out and counted); within its range a rank shuffles inside a window of ``shuffle_buffer``
samples (webdataset's ``shuffle(n)``: reads stay near-sequential); its batches go round-robin
to the DataLoader's workers, which read just their samples by offset. So every sample is used
at most once per epoch, the batches do not depend on the number of workers, and a resume at
batch ``s`` reads nothing before it.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import re
import tarfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from ..files import atomic_file
from .epochs import EpochPlan, sample_seed
from .pairs import ImageKeys, LoadReport, Pairs, RawRecord, open_image, validate_records

MANIFEST = "shards.json"
FORMAT = "finelip-kit shards 1"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSION = "txt"
MAX_TEXT_BYTES = 1 << 20  # a caption or json member above 1 MiB is a defect, not a caption
_SHARD_NAME = re.compile(r"\d{6}\.tar")
_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


# ----------------------------------------------------------------------------- writing
@dataclass
class ShardReport:
    """What ``write_shards`` wrote, and what the load before it skipped."""

    out: str
    pairs: int = 0
    shards: int = 0
    bytes: int = 0
    seconds: float = 0.0
    reencoded: int = 0  # images not in jpg/png/webp (or given as pixels), written as PNG
    load: LoadReport | None = None

    def __str__(self) -> str:
        skipped = self.load.skipped if self.load is not None else 0
        lines = [f"wrote {self.pairs} pairs in {self.shards} shards ({self.bytes / 2**20:.1f} MiB) to {self.out} "
                 f"in {self.seconds:.1f} s; {skipped} records skipped when the pairs were loaded"]
        if self.reencoded:
            lines.append(f"  {self.reencoded} images written as PNG (given as pixels, or bytes not in jpg/png/webp)")
        if self.load is not None and (self.load.skipped or self.load.notes):
            lines += ["  " + line for line in str(self.load).splitlines()[1:]]
        return "\n".join(lines)


def write_shards(pairs, out: str | Path, shard_size: int = 10_000, overwrite: bool = False) -> ShardReport:
    """Write ``pairs`` (a ``Pairs`` from ``load_pairs``, ``SyntheticScenes``, any indexable of
    records) as ``000000.tar, 000001.tar, ...`` of ``shard_size`` samples into ``out``, with the
    ``shards.json`` manifest.

    Each shard is written to a temporary file created exclusively in ``out`` (``files.atomic_file``: a
    planted name or symlink is never followed) and renamed: a kill leaves whole shards only. One writer at a
    time holds ``out`` (a lock on the folder; a second writer is refused, naming the first).
    ``overwrite`` replaces earlier shards the kit wrote (those its ``shards.json`` names, sizes
    unchanged); shard-named files it did not write are never removed. An output folder that holds
    the input shards is refused."""
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    if len(pairs) == 0:
        raise ValueError("no pairs to write: the pairs are empty")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {str(out)!r} is a file; name a folder for the shards")
    _refuse_own_input(pairs, out)
    out.mkdir(parents=True, exist_ok=True)
    with _folder_lock(out):
        earlier = _earlier_shards(out)
        if earlier and not overwrite:
            raise FileExistsError(f"{str(out)!r} already holds shards ({earlier[0].name}, ... {len(earlier)} files); "
                                  f"pass overwrite=True (--overwrite) to replace them, or name another folder")
        for path in earlier:
            path.unlink()
        for stale in out.glob(".[0-9]*.tar.*.tmp"):  # temporaries of a killed writer (the lock is ours now)
            if stale.is_symlink() or stale.is_file():
                stale.unlink()
        return _write(pairs, out, shard_size)


def _write(pairs, out: Path, shard_size: int) -> ShardReport:
    started = time.perf_counter()
    report = ShardReport(out=str(out), load=getattr(pairs, "report", None))
    shards: list[dict[str, Any]] = []
    width = max(9, len(str(len(pairs) - 1)))
    for first in range(0, len(pairs), shard_size):
        name = f"{len(shards):06d}.tar"
        count = 0
        with atomic_file(out / name, "wb") as file:  # created exclusively: a planted link redirects nothing
            with tarfile.open(fileobj=file, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for index in range(first, min(first + shard_size, len(pairs))):
                    image, extension, caption, fields, reencoded = _sample(pairs, index)
                    key = f"{index:0{width}d}"
                    _add(tar, f"{key}.{extension}", image)
                    _add(tar, f"{key}.{CAPTION_EXTENSION}", caption.encode("utf-8"))
                    _add(tar, f"{key}.json", json.dumps(fields, ensure_ascii=False).encode("utf-8"))
                    report.reencoded += reencoded
                    count += 1
        size = (out / name).stat().st_size
        shards.append({"name": name, "count": count, "bytes": size})
        report.bytes += size
    report.pairs, report.shards = sum(s["count"] for s in shards), len(shards)
    manifest = {"format": FORMAT, "source": getattr(pairs, "name", type(pairs).__name__),
                "protocol": getattr(pairs, "protocol", None), "count": report.pairs, "shards": shards}
    with atomic_file(out / MANIFEST, "w") as file:
        file.write(json.dumps(manifest, indent=1))
    report.seconds = time.perf_counter() - started
    return report


def _earlier_shards(out: Path) -> list[Path]:
    """The shard files and manifest in ``out`` that the kit wrote (its manifest names each, size
    unchanged), to replace on overwrite; any shard-named entry it did not write is refused by name."""
    names = sorted(p for p in out.iterdir() if _SHARD_NAME.fullmatch(p.name) or p.name == MANIFEST)
    if not names:
        return []
    manifest, problem = _read_manifest(out / MANIFEST)
    listed = {s["name"]: s for s in manifest["shards"]} if manifest is not None else {}
    foreign = []
    for path in names:
        if path.name == MANIFEST:
            if manifest is None:
                foreign.append(f"{MANIFEST} ({problem})")
            continue
        entry = listed.get(path.name)
        if path.is_symlink() or not path.is_file():
            foreign.append(f"{path.name} (not a regular file)")
        elif entry is None:
            foreign.append(f"{path.name} (not named by a finelip-kit {MANIFEST})")
        elif entry["bytes"] != path.stat().st_size:
            foreign.append(f"{path.name} ({path.stat().st_size} bytes; the kit wrote {entry['bytes']})")
    if foreign:
        raise FileExistsError(
            f"{str(out)!r} holds shard-named files that finelip-kit did not write (or that changed since): "
            f"{', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}. The kit removes only its own shards: "
            f"move them yourself, or name another folder")
    return names


def _refuse_own_input(pairs, out: Path) -> None:
    """An output folder that is, or holds, the input's shards would lose them: refused."""
    target = out.resolve()
    inside = [p for p in getattr(pairs, "paths", []) if target == p.resolve().parent or target in p.resolve().parents]
    if inside:
        raise ValueError(f"--out {str(out)!r} holds the input shards ({inside[0].name}, ... {len(inside)} of them): "
                         f"writing there would replace them before they are read; name another folder")


@contextmanager
def _folder_lock(folder: Path):
    """An exclusive lock on ``folder`` itself (``flock`` on its descriptor: no file left behind; it
    dies with its process). A second writer is refused, naming the first one's process."""
    import fcntl

    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(folder)
            raise FileExistsError(f"another writer{f' (process {holder})' if holder else ''} is writing shards into "
                                  f"{str(folder)!r}; wait for it to finish, or name another folder") from None
        yield
    finally:
        os.close(handle)


def _lock_holder(folder: Path) -> int | None:
    """The process holding a ``flock`` on ``folder`` (Linux: /proc/locks), or None when unknown."""
    try:
        inode, lines = folder.stat().st_ino, Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(inode):
            return int(parts[4]) if parts[4].isdigit() else None
    return None


def _sample(pairs, index: int) -> tuple[bytes, str, str, dict[str, Any], int]:
    """(image bytes, extension, caption, other fields, 1 if re-encoded) of record ``index``; a
    ``Pairs`` gives its image files' own bytes without decoding them."""
    if isinstance(pairs, Pairs):
        row = pairs.hf[index]
        source = row.pop("image_bytes", None) or Path(row["image"]).read_bytes()
        row.pop("image")
    elif isinstance(pairs, ShardPairs):  # re-sharding: the image member's bytes as they are
        row = pairs.record(index, decode=False)
        source = row.pop("image")
    else:
        row = dict(pairs[index])
        source = row.pop("image")
    caption = row.pop("caption")
    fields = {k: v for k, v in row.items() if v is not None}
    if isinstance(source, (bytes, bytearray)):
        with Image.open(io.BytesIO(source)) as opened:  # the header only: which format the bytes are
            extension = _FORMATS.get(opened.format or "")
        if extension is not None:
            return bytes(source), extension, caption, fields, 0
        source = open_image(bytes(source), f"record {index}")
    buffer = io.BytesIO()
    source.save(buffer, format="PNG")
    return buffer.getvalue(), "png", caption, fields, 1


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # reproducible bytes: no time, no owner
    tar.addfile(info, io.BytesIO(data))


# ----------------------------------------------------------------------------- naming shards
def expand_urls(spec: str) -> list[Path]:
    """``wds:`` shards named as webdataset names them: brace ranges ``dir/{000000..000099}.tar``,
    lists ``{a,b}``, one ``.tar``, or a folder (its ``*.tar`` in name order). Every file must exist."""
    text = spec[4:] if spec.startswith("wds:") else spec
    if not text:
        raise ValueError("wds: names no shards; write e.g. wds:shards/{000000..000009}.tar or wds:shards/")
    if "{" not in text and Path(text).is_dir():
        paths = sorted(p for p in Path(text).iterdir() if p.suffix == ".tar" and p.is_file())
        if not paths:
            raise FileNotFoundError(f"folder {text!r} holds no .tar shards (write some with `finelip shard`)")
        return paths
    paths = [Path(p) for p in _braces(text)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(paths)} shards named by {spec!r} do not exist, "
                                f"e.g. {str(missing[0])!r}")
    return paths


MAX_SHARD_NAMES = 1_000_000  # what one wds: name may expand to (LAION-5B at 10k pairs a shard is 500k shards)


def _braces(text: str, limit: int = MAX_SHARD_NAMES) -> list[str]:
    """Bash-style brace expansion: ``{0..9}`` / ``{000..099}`` (zero-padded) and ``{a,b,c}``. How many
    names it makes is computed first: more than ``limit`` is refused before anything is expanded."""
    options = []
    for match in re.finditer(r"\{([^{}]*)\}", text):
        options.append(_brace_options(match.group(1), text))
    count = math.prod(len(o) if isinstance(o, list) else o[1] - o[0] + 1 for o in options) if options else 1
    if count > limit:
        raise ValueError(f"{text!r} names {count:,} shards, more than the {limit:,} one name may expand to; "
                         f"name a smaller range, or the folder (wds:<dir>/)")
    parts = re.split(r"\{[^{}]*\}", text)
    names = [parts[0]]
    for option, tail in zip(options, parts[1:]):
        if isinstance(option, tuple):
            low, high, width = option
            values = [f"{i:0{width}d}" for i in range(low, high + 1)]
        else:
            values = option
        names = [name + value + tail for name in names for value in values]
    return names


def _brace_options(body: str, text: str):
    """``(low, high, width)`` for a numeric range, the list of alternatives for ``a,b``."""
    numbers = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numbers:
        low, high = numbers.groups()
        if int(high) < int(low):
            raise ValueError(f"shard range {{{body}}} runs backwards; write {{{high}..{low}}}")
        return int(low), int(high), len(low) if low.startswith("0") else 0
    if "," in body:
        return body.split(",")
    raise ValueError(f"cannot expand {{{body}}} in {text!r}: use {{000000..000099}} or {{a,b}}")


# ----------------------------------------------------------------------------- reading
@dataclass
class _ShardIndex:
    """Where each sample's members lie in one shard (byte offsets and sizes, by member kind)."""

    keys: list[str]
    image: np.ndarray  # (samples, 2) offset, size
    caption: np.ndarray
    meta: np.ndarray  # offset, size; size -1: no json member
    extensions: list[str] = field(default_factory=list)


def _scan(path: Path, report: LoadReport | None = None) -> _ShardIndex:
    """Read a shard's headers only (member data are skipped by seeking): its samples' offsets.
    A sample lacking an image or a caption member, or with a caption or json over 1 MiB, is left
    out and counted in ``report`` (raises without one)."""
    keys, image, caption, meta, extensions = [], [], [], [], []

    def close(key: str | None, members: dict[str, tarfile.TarInfo]) -> None:
        if key is None:
            return
        found = next((e for e in IMAGE_EXTENSIONS if e in members), None)
        problem = None
        if found is None:
            problem = ("sample has no image member (.jpg/.jpeg/.png/.webp)", f"members {sorted(members)}")
        elif CAPTION_EXTENSION not in members:
            problem = ("sample has no caption member (.txt)", f"members {sorted(members)}")
        elif max(members[e].size for e in (CAPTION_EXTENSION, "json") if e in members) > MAX_TEXT_BYTES:
            problem = ("caption or json member over 1 MiB", f"{members[CAPTION_EXTENSION].size} bytes of caption")
        if problem is not None:
            if report is None:
                raise ValueError(f"shard {str(path)!r} sample {key!r}: {problem[0]} ({problem[1]})")
            report.skip(problem[0], f"{path.name} sample {key!r}", problem[1])
            return
        keys.append(key)
        extensions.append(found)
        image.append((members[found].offset_data, members[found].size))
        caption.append((members[CAPTION_EXTENSION].offset_data, members[CAPTION_EXTENSION].size))
        meta.append((members["json"].offset_data, members["json"].size) if "json" in members else (0, -1))

    try:
        with tarfile.open(path, "r:") as tar:
            key, members = None, {}
            for info in tar:
                if not info.isfile():
                    continue
                folder, _, base = info.name.rpartition("/")
                stem, dot, extension = base.partition(".")
                sample = f"{folder}/{stem}" if folder else stem
                if sample != key:
                    close(key, members)
                    key, members = sample, {}
                if dot:
                    members[extension.lower()] = info
            close(key, members)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ValueError(f"shard {str(path)!r} is not a readable tar file ({type(error).__name__}: {error}); "
                         f"rewrite it (finelip shard) or leave it out of the shard list") from error
    as_array = lambda rows: np.asarray(rows, dtype=np.int64).reshape(-1, 2)  # noqa: E731
    return _ShardIndex(keys, as_array(image), as_array(caption), as_array(meta), extensions)


class ShardPairs:
    """Pairs streamed from webdataset shards (``load_pairs("wds:...")``): ``len``, ``report``,
    ``name``, ``protocol`` as ``Pairs`` has them; iterate for every record in shard order;
    ``take(n)`` gives the first ``n`` as in-memory ``Pairs`` (for evaluation); the ``Trainer``
    streams them with ``ShardEpoch``."""

    def __init__(self, paths: list[Path], spec: str, on_error: str = "raise", verify: str = "none"):
        self.paths, self.spec = list(paths), spec
        self.name, self.on_error = spec, on_error
        self.report = LoadReport()
        self._indexes: dict[int, _ShardIndex] = {}
        manifest = _manifest_counts(self.paths, self.report)
        self.protocol = (manifest[1] if manifest else None) or spec
        if manifest is not None:  # the kit wrote them from validated pairs: trusted, nothing read
            self.counts = manifest[0]
        else:  # shards from another tool: scanned once (and decoded, unless verify="none")
            skips = self.report if on_error == "skip" else None
            self.counts = []
            for number, path in enumerate(self.paths):
                self._indexes[number] = _scan(path, skips)
                self.counts.append(len(self._indexes[number].keys))
                if verify != "none":
                    self._verify(number, skips)
        self.report.loaded = sum(self.counts)
        if self.report.loaded == 0:
            raise ValueError(f"{spec}: no usable samples in {len(self.paths)} shards ({self.report})")
        self.starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __repr__(self) -> str:
        return f"ShardPairs({self.spec!r}, {len(self)} pairs in {len(self.paths)} shards, skipped {self.report.skipped})"

    def index(self, shard: int) -> _ShardIndex:
        if shard not in self._indexes:
            found = _scan(self.paths[shard])
            if len(found.keys) != self.counts[shard]:
                raise ValueError(f"shard {str(self.paths[shard])!r} holds {len(found.keys)} samples, its manifest "
                                 f"says {self.counts[shard]}: the shards changed since they were written; rewrite "
                                 f"them (finelip shard --overwrite) or delete {MANIFEST} to have them scanned")
            self._indexes[shard] = found
        return self._indexes[shard]

    def record(self, position: int, decode: bool = True) -> dict[str, Any]:
        """The record at ``position`` (0 .. len-1, in shard order), image decoded as RGB (``decode=False``:
        the image member's bytes as written)."""
        if not 0 <= position < len(self):
            raise IndexError(f"position {position} out of range for {len(self)} pairs in the shards")
        shard = int(np.searchsorted(self.starts, position, side="right") - 1)
        return self.read(shard, position - int(self.starts[shard]), decode)

    def read(self, shard: int, number: int, decode: bool = True) -> dict[str, Any]:
        """Sample ``number`` of shard ``shard``; without an integer ``image_id`` in its json, its
        position (each sample its own image)."""
        record = self._decode(shard, number, decode)
        if not isinstance(record.get("image_id"), int) or isinstance(record["image_id"], bool):
            record["image_id"] = int(self.starts[shard]) + number
        return record

    __getitem__ = record  # positional reads (near-sequential use is what shards are for)

    def _decode(self, shard: int, number: int, decode: bool = True) -> dict[str, Any]:
        index, file = self.index(shard), self._file(shard)
        key, where = index.keys[number], f"{self.paths[shard]} sample {index.keys[number]!r}"
        image, caption = _read(file, index.image[number], where), _read(file, index.caption[number], where)
        meta = _read(file, index.meta[number], where) if index.meta[number][1] >= 0 else b"{}"
        try:
            fields = json.loads(meta.decode("utf-8"))
            text = caption.decode("utf-8")
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{where}: caption or json is not UTF-8 JSON/text ({error}); load with "
                             f"verify='full', on_error='skip' to leave such samples out (counted)") from error
        if not isinstance(fields, dict):
            raise ValueError(f"{where}: the json member must hold an object, got {type(fields).__name__}")
        record = {**fields, "image": open_image(image, where) if decode else image, "caption": " ".join(text.split())}
        record.setdefault("image_key", key)
        return record

    def _file(self, shard: int) -> int:
        """An open descriptor of the shard, one per process (reads use ``os.pread``: no shared offset
        between the DataLoader's forked workers)."""
        if getattr(self, "_pid", None) != os.getpid():
            self._pid, self._fds = os.getpid(), {}
        if shard not in self._fds:
            self._fds[shard] = os.open(self.paths[shard], os.O_RDONLY)
        return self._fds[shard]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_pid", "_fds")}

    def _verify(self, shard: int, skips: LoadReport | None) -> None:
        """Read and decode every sample of a scanned shard now (``verify`` 'full' or 'header'), and hold
        its json ``image_id`` to the one duplicate-id rule (``pairs.ImageKeys``); a bad one is left out
        and counted (``on_error='skip'``) or raises."""
        index, keep = self._indexes[shard], []
        images = self.__dict__.setdefault("_image_keys", ImageKeys())  # across the shards of this set
        for number in range(len(index.keys)):
            where = f"{self.paths[shard].name} sample {index.keys[number]!r}"
            try:
                record = self._decode(shard, number, decode=False)
                open_image(record["image"], where)
                if not record["caption"]:
                    raise ValueError(f"{where}: empty caption")
            except ValueError as error:
                if skips is None:
                    raise
                skips.skip("sample unreadable (image, caption or json)", where, str(error).split(": ", 1)[-1][:120])
                continue
            key = _id_key(record)
            problem = images.problem(key, record["image"]) if key is not None else None
            if problem is not None:
                if skips is None:
                    raise ValueError(f"{where}: {problem[0]} ({problem[1]}): each image needs its own image_id in "
                                     f"the json member. Fix the shards, or load with on_error='skip' (counted)")
                skips.skip(problem[0], where, problem[1])
                continue
            if key is not None:
                images.add(key, record["image"])
            keep.append(number)
        self._indexes[shard] = _ShardIndex([index.keys[i] for i in keep], index.image[keep], index.caption[keep],
                                           index.meta[keep], [index.extensions[i] for i in keep])
        self.counts[shard] = len(keep)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for shard, count in enumerate(self.counts):
            for number in range(count):
                yield self.read(shard, number)

    def take(self, n: int | None = None) -> Pairs:
        """The first ``n`` records (all with None) as in-memory ``Pairs`` (image bytes kept as written),
        checked as every loaded source is (``datasets._validate``: decodable images, captions, one
        image per image id); a bad record raises or, with ``on_error='skip'``, is counted."""
        def raw():
            taken = 0
            for shard, count in enumerate(self.counts):
                for number in range(count):
                    if n is not None and taken >= n:
                        return
                    record = self._decode(shard, number, decode=False)
                    where = f"{self.paths[shard].name} sample {record['image_key']!r}"
                    key = _id_key(record)
                    yield RawRecord(record["image"], record["caption"], str(record["image_key"]), where,
                                    short_caption=record.get("short_caption"), group=record.get("group"),
                                    id_key=key if key is not None else f"position {int(self.starts[shard]) + number}")
                    taken += 1

        pairs = validate_records(raw(), self.spec, self.on_error, "full")
        whole = len(pairs) == len(self)
        pairs.protocol = self.protocol if whole else f"{self.protocol}[:{len(pairs)} pairs]"
        pairs.report.skipped += self.report.skipped  # what the scan left out, and what this check did
        pairs.report.reasons.update(self.report.reasons)
        pairs.report.examples = self.report.examples + pairs.report.examples
        pairs.report.notes.update(self.report.notes)
        return pairs


def _id_key(record: dict[str, Any]) -> str | None:
    """What names a sample's image: its json ``image_id`` (an integer), else None (its own image)."""
    value = record.get("image_id")
    return f"id {value}" if isinstance(value, int) and not isinstance(value, bool) else None


def _read(fd: int, where: np.ndarray, label: str) -> bytes:
    offset, size = int(where[0]), int(where[1])
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise ValueError(f"{label}: member at byte {offset} is cut short ({len(data)} of {size} bytes): the "
                         f"shard is truncated; rewrite it")
    return data


def _read_manifest(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The kit's ``shards.json`` at ``path``, checked entry by entry (types, signs, the total), or
    (None, what is wrong with it)."""
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as error:
        return None, f"unreadable: {type(error).__name__}: {str(error)[:80]}"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None, f"not a finelip-kit manifest (format {manifest.get('format') if isinstance(manifest, dict) else None!r})"
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        return None, "'shards' is not a non-empty list"
    names = set()
    for number, entry in enumerate(shards):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not _SHARD_NAME.fullmatch(entry["name"]):
            return None, f"shards[{number}] has no shard name NNNNNN.tar"
        for key, low in (("count", 1), ("bytes", 0)):
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                return None, f"shards[{number}] ({entry['name']}) {key} is {value!r}, not an integer >= {low}"
        if entry["name"] in names:
            return None, f"{entry['name']} is listed twice"
        names.add(entry["name"])
    total = sum(entry["count"] for entry in shards)
    if manifest.get("count") != total:
        return None, f"its count {manifest.get('count')!r} is not the sum of its shards' counts ({total})"
    return manifest, ""


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _manifest_counts(paths: list[Path], report: LoadReport | None = None) -> tuple[list[int], str | None] | None:
    """Each shard's count from the ``shards.json`` beside it, when that manifest is valid and lists
    every named shard with its size unchanged; None otherwise (the shards are then scanned, and an
    invalid manifest is named in ``report``'s notes)."""
    counts, protocol = [], None
    cache: dict[Path, dict[str, Any]] = {}
    for path in paths:
        folder = path.parent
        if folder not in cache:
            manifest, problem = _read_manifest(folder / MANIFEST)
            if manifest is None and problem != "missing" and report is not None:
                report.notes[f"{folder / MANIFEST} is not a valid manifest ({problem}): its shards were scanned"] += 1
            cache[folder] = {s["name"]: s for s in manifest["shards"]} if manifest is not None else {}
            protocol = protocol or (manifest.get("protocol") if manifest is not None else None)
        entry = cache[folder].get(path.name)
        if entry is None or entry["bytes"] != path.stat().st_size:
            return None
        counts.append(entry["count"])
    return counts, protocol if isinstance(protocol, str) else None


# ----------------------------------------------------------------------------- one epoch, streamed
def window_order(size: int, buffer: int, seed: int) -> list[int]:
    """``0 .. size-1`` as a shuffle buffer of ``buffer`` samples emits them (webdataset's
    ``shuffle(n)``): fill the buffer, then each new sample replaces a random one, which is emitted;
    the rest leave in random order. Every position exactly once; a sample leaves at most
    ``buffer`` places before it arrives."""
    if buffer <= 1:
        return list(range(size))
    rng, held, order = random.Random(seed), [], []
    for position in range(size):
        if len(held) < buffer:
            held.append(position)
            continue
        slot = rng.randrange(buffer)
        order.append(held[slot])
        held[slot] = position
    rng.shuffle(held)
    return order + held


class ShardEpoch(EpochPlan, IterableDataset):
    """One epoch of one rank's batches from ``ShardPairs``, from batch ``start_batch`` on, split
    round-robin over the DataLoader's workers (load with ``batch_size=None``: items are batches).
    The epoch plan and its seeds are the map-style sampler's (``data/epochs.py``).

    ``transform`` is applied per record; a random one is seeded by ``(seed, epoch, position)`` as
    ``SeededPairs`` seeds the map-style data (exact resume)."""

    def __init__(self, shards: ShardPairs, batch_size: int, epoch: int = 0, seed: int = 0, rank: int = 0,
                 world_size: int = 1, start_batch: int = 0, shuffle_buffer: int = 1000,
                 transform: Callable | None = None):
        super().__init__(len(shards), batch_size, seed, rank, world_size, what="training pairs in the shards")
        self.set_epoch(epoch, start_batch)
        self.shards, self.shuffle_buffer, self.transform = shards, shuffle_buffer, transform

    def positions(self) -> list[int]:
        """This rank's sample positions for the epoch, in batch order (``batches_per_epoch · batch_size``)."""
        generator = self.generator()
        order = torch.randperm(len(self.shards.counts), generator=generator).tolist()
        per_rank = self.batches_per_epoch * self.batch_size
        starts, counts = self.shards.starts, np.asarray(self.shards.counts)
        stream = np.concatenate([np.arange(starts[s], starts[s] + counts[s]) for s in order])  # the shuffled shards
        mine = stream[self.rank * per_rank: (self.rank + 1) * per_rank]  # this rank's contiguous range
        window = window_order(per_rank, self.shuffle_buffer, sample_seed(self.seed, self.epoch, self.rank))
        return mine[window].tolist()

    def index_shards(self) -> set[int]:
        """Scan, in this process, the headers of the shards this rank reads this epoch, so that the
        DataLoader's workers inherit the offsets instead of each scanning them again every epoch
        (scans are kept across epochs). Returns those shards."""
        needed = {int(np.searchsorted(self.shards.starts, p, side="right") - 1) for p in self.positions()}
        for shard in needed:
            self.shards.index(shard)
        return needed

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        positions = self.positions()
        for batch in range(self.start_batch + worker, self.batches_per_epoch, workers):
            yield [self._load(p) for p in positions[batch * self.batch_size: (batch + 1) * self.batch_size]]

    def _load(self, position: int) -> dict[str, Any]:
        record = self.shards.record(position)
        if self.transform is None:
            return record
        if getattr(self.transform, "train", False):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed(self.seed, self.epoch, position))
                record["image"] = self.transform(record["image"])
        else:
            record["image"] = self.transform(record["image"])
        return record
