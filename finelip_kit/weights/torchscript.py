"""Read the tensors of a TorchScript archive without running anything from it.

OpenAI's CLIP releases are TorchScript archives. ``torch.jit.load`` compiles the archive's
``code/`` and runs its classes' ``__setstate__`` while loading, so a crafted archive runs
whatever it carries. This reader does neither: ``data.pkl`` (the module tree) is unpickled
with an unpickler that knows exactly the handful of globals a plain module archive uses
(tensor rebuilding, storage types, ``OrderedDict``) and turns every ``__torch__`` object
into an inert record of its attributes; tensor bytes come straight from the archive's
``data/`` records. ``code/`` is only *read as text* for each class's ``__parameters__`` and
``__buffers__`` lists, so the result is exactly the archive's ``state_dict()``.

Anything else in ``data.pkl`` (another global, a persistent id that is not a storage, an
object whose state is not a plain attribute dict, i.e. one with its own ``__setstate__``, a
class or storage type called with arguments) is refused with ``UnsafeArchiveError``. So are
archives built to exhaust memory: a compressed record may expand at most ``MAX_EXPANSION`` times
(plus ``EXPANSION_SLACK`` bytes; real archives store their records uncompressed), and every
tensor must lie inside its storage's stored bytes (a stride-0 view of a few bytes cannot become
gigabytes when it is copied out).
"""

from __future__ import annotations

import io
import math
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


MAX_EXPANSION = 16  # a compressed record may expand to this many times its compressed size ...
EXPANSION_SLACK = 1 << 20  # ... plus this (a record of zeros deflates to almost nothing)
MAX_CODE_BYTES = 16 << 20  # one code/ file (read as text); OpenAI's are a few hundred KB in all


class UnsafeArchiveError(pickle.UnpicklingError):
    """The archive holds something other than plain modules and tensors."""


class _StorageType:
    def __init__(self, name: str):
        self.name, self.dtype = name, _STORAGE_DTYPES[name]

    def __call__(self, *args, **kwargs):
        raise UnsafeArchiveError(f"the archive's data.pkl calls torch.{self.name}(...), which a plain module archive "
                                 f"never does (storages come from its data/ records); refused")


class ScriptObject:
    """An inert stand-in for one ``__torch__`` object: its class name and its attributes."""

    qualified_name = "?"

    def __init__(self, *args, **kwargs) -> None:
        if args or kwargs:  # the pickle calls the class: only its own code could say what the arguments mean
            raise UnsafeArchiveError(f"the archive's data.pkl calls class {self.qualified_name} with arguments; a plain "
                                     f"module archive only restores attributes; refused")
        self.attributes: dict = {}

    def __setstate__(self, state) -> None:  # called by the unpickler's BUILD; stores, runs nothing
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise UnsafeArchiveError(
                f"object of class {self.qualified_name} carries a custom state ({type(state).__name__}), which only "
                f"its own __setstate__ code could interpret; the kit does not run archive code"
            )
        self.attributes = dict(state)


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, requires_grad=False, hooks=None, *rest):
    if not (isinstance(storage, torch.Tensor) and _whole(offset) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(map(_whole, size)) and all(map(_whole, stride))):
        raise UnsafeArchiveError("malformed tensor record in the archive (offset, size and stride must be whole numbers "
                                 ">= 0, one stride per dimension)")
    elements = math.prod(size)
    if elements and offset + sum((s - 1) * st for s, st in zip(size, stride)) >= storage.numel():
        raise UnsafeArchiveError(f"tensor of size {size} reads past its storage of {storage.numel()} elements")
    if elements > storage.numel():  # a stride-0 view: a few stored bytes that would become gigabytes when copied
        raise UnsafeArchiveError(f"tensor of size {size} ({elements} elements) repeats its storage of "
                                 f"{storage.numel()} stored elements (stride {stride}); a state dict's tensors hold "
                                 f"their own values")
    return torch.as_strided(storage, size, stride, offset)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, budget: "_Budget"):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.budget = archive, prefix, budget
        self.storages: dict[str, torch.Tensor] = {}
        self.classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self.classes:
                self.classes[qualified] = type(name, (ScriptObject,), {"qualified_name": qualified})
            return self.classes[qualified]
        raise UnsafeArchiveError(
            f"the archive's data.pkl asks for {module}.{name}, which a plain module archive never holds; refused"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnsafeArchiveError(f"unexpected persistent id in the archive: {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid
        if key not in self.storages:
            if not re.fullmatch(r"\w+", str(key)):
                raise UnsafeArchiveError(f"storage key {key!r} is not a plain record name")
            raw = bytearray(_read_bounded(self.archive, f"{self.prefix}data/{key}", self.budget))
            values = torch.frombuffer(raw, dtype=storage_type.dtype) if raw else torch.empty(0, dtype=storage_type.dtype)
            if values.numel() < numel:
                raise UnsafeArchiveError(f"storage {key} holds {values.numel()} elements, the archive claims {numel}")
            self.storages[key] = values
        return self.storages[key]


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with ``constants.pkl`` or ``code/``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


class _Budget:
    """What the archive's records may decompress to in all: ``MAX_EXPANSION`` times the archive's
    size, plus ``EXPANSION_SLACK`` (each record is also bounded on its own, ``_read_bounded``)."""

    def __init__(self, archive: zipfile.ZipFile):
        self.left = MAX_EXPANSION * sum(i.compress_size for i in archive.infolist()) + EXPANSION_SLACK


def _read_bounded(archive: zipfile.ZipFile, name: str, budget: _Budget, limit: int | None = None) -> bytes:
    """A record's bytes, refused before decompression when its declared size is more than a compressed
    record may expand to, more than ``limit``, or more than is left of the archive's budget."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise UnsafeArchiveError(f"the archive names record {name!r}, which it does not hold") from None
    expanded = info.file_size
    if info.compress_type != zipfile.ZIP_STORED and expanded > MAX_EXPANSION * info.compress_size + EXPANSION_SLACK:
        raise UnsafeArchiveError(f"record {name!r} would decompress from {info.compress_size:,} to {expanded:,} bytes "
                                 f"(more than {MAX_EXPANSION}x): a decompression bomb, not weights")
    if limit is not None and expanded > limit:
        raise UnsafeArchiveError(f"record {name!r} is {expanded:,} bytes, more than the {limit:,} a {name.split('/')[-2]}/ "
                                 f"file of a module archive may hold")
    if expanded > budget.left:
        raise UnsafeArchiveError(f"the archive's records would decompress to more than {MAX_EXPANSION}x its size "
                                 f"(at {name!r}): a decompression bomb, not weights")
    budget.left -= expanded
    return archive.read(name)


def read_torchscript_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict()`` of a TorchScript module archive, read without executing it."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        data = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(data) != 1:
            raise UnsafeArchiveError(f"{str(path)!r}: expected one <archive>/data.pkl, found {data}")
        prefix = data[0][: -len("data.pkl")]
        budget = _Budget(archive)
        unpickler = _Unpickler(_read_bounded(archive, data[0], budget), archive, prefix, budget)
        try:
            root = unpickler.load()
        except UnsafeArchiveError:
            raise
        except (pickle.UnpicklingError, TypeError, ValueError, AttributeError, IndexError, KeyError, EOFError, RecursionError, MemoryError,
                RuntimeError) as error:  # a malformed pickle; nothing of it ran
            raise UnsafeArchiveError(f"the archive's data.pkl is malformed ({type(error).__name__}: "
                                     f"{str(error)[:120]})") from None
        declared = _declared_tensors(archive, prefix)
    if not isinstance(root, ScriptObject):
        raise UnsafeArchiveError(f"{str(path)!r}: the archive's root is {type(root).__name__}, not a module")
    state: dict[str, torch.Tensor] = {}
    stored = sum(storage.numel() for storage in unpickler.storages.values())
    _collect(root, "", declared, state, [2 * stored], str(path))
    return state


def _collect(obj: ScriptObject, prefix: str, declared: dict[str, set[str]], out: dict[str, torch.Tensor],
             left: list[int], path: str) -> None:
    """The module tree's declared tensors, copied out; ``left``: how many elements may still be copied
    (twice what the archive stores: views of one storage cannot multiply it)."""
    allowed = declared.get(obj.qualified_name)
    for name, value in obj.attributes.items():
        if isinstance(value, torch.Tensor) and (allowed is None or name in allowed):
            left[0] -= value.numel()
            if left[0] < 0:
                raise UnsafeArchiveError(f"{path!r}: its tensors would copy out more than twice the elements the "
                                         f"archive stores (views of one storage, repeated); refused")
            out[prefix + name] = value.clone()  # own memory, not a view of the whole storage
        elif isinstance(value, ScriptObject):
            _collect(value, f"{prefix}{name}.", declared, out, left, path)


def _declared_tensors(archive: zipfile.ZipFile, prefix: str) -> dict[str, set[str]]:
    """``{qualified class name: names in its __parameters__ and __buffers__}`` read from ``code/``
    as text (never compiled). A class missing here keeps all its tensor attributes."""
    declared: dict[str, set[str]] = {}
    code = f"{prefix}code/"
    budget = _Budget(archive)
    for name in archive.namelist():
        if not (name.startswith(code) and name.endswith(".py")):
            continue
        module = name[len(code) : -len(".py")].replace("/", ".")
        current = None
        for line in _read_bounded(archive, name, budget, MAX_CODE_BYTES).decode("utf-8", errors="replace").splitlines():
            header = re.match(r"class (\w+)\(", line)
            if header:
                current = f"{module}.{header.group(1)}"
                declared.setdefault(current, set())
                continue
            listing = re.match(r"\s+__(parameters|buffers)__ = (\[.*\])\s*$", line)
            if listing and current is not None:
                names = _string_list(listing.group(2))
                if names is None:
                    declared.pop(current, None)  # unreadable: keep every tensor attribute of that class
                else:
                    declared[current].update(names)
    return declared


_STRING = r"""(?:"[^"\\]*"|'[^'\\]*')"""
_STRING_LIST = re.compile(rf"\[\s*(?:{_STRING}\s*(?:,\s*{_STRING}\s*)*,?\s*)?\]")


def _string_list(text: str) -> list[str] | None:
    """``["a", 'b']`` as its strings, or None for anything else (never evaluated: a pattern match)."""
    if not _STRING_LIST.fullmatch(text):
        return None
    return [m[1:-1] for m in re.findall(_STRING, text)]
