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
object whose state is not a plain attribute dict, i.e. one with its own ``__setstate__``)
is refused with ``UnsafeArchiveError``.
"""

from __future__ import annotations

import ast
import io
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


class UnsafeArchiveError(pickle.UnpicklingError):
    """The archive holds something other than plain modules and tensors."""


class _StorageType:
    def __init__(self, name: str):
        self.dtype = _STORAGE_DTYPES[name]


class ScriptObject:
    """An inert stand-in for one ``__torch__`` object: its class name and its attributes."""

    qualified_name = "?"

    def __init__(self) -> None:
        self.attributes: dict = {}

    def __setstate__(self, state) -> None:  # called by the unpickler's BUILD; stores, runs nothing
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise UnsafeArchiveError(
                f"object of class {self.qualified_name} carries a custom state ({type(state).__name__}), which only "
                f"its own __setstate__ code could interpret; the kit does not run archive code"
            )
        self.attributes = dict(state)


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, requires_grad=False, hooks=None, *rest):
    if not (isinstance(offset, int) and isinstance(size, tuple) and isinstance(stride, tuple)):
        raise UnsafeArchiveError("malformed tensor record in the archive")
    if size and offset + sum((s - 1) * st for s, st in zip(size, stride)) >= storage.numel() and 0 not in size:
        raise UnsafeArchiveError(f"tensor of size {size} reads past its storage of {storage.numel()} elements")
    return torch.as_strided(storage, size, stride, offset)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix
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
            raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
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


def read_torchscript_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict()`` of a TorchScript module archive, read without executing it."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        data = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(data) != 1:
            raise UnsafeArchiveError(f"{str(path)!r}: expected one <archive>/data.pkl, found {data}")
        prefix = data[0][: -len("data.pkl")]
        root = _Unpickler(archive.read(data[0]), archive, prefix).load()
        declared = _declared_tensors(archive, prefix)
    if not isinstance(root, ScriptObject):
        raise UnsafeArchiveError(f"{str(path)!r}: the archive's root is {type(root).__name__}, not a module")
    state: dict[str, torch.Tensor] = {}
    _collect(root, "", declared, state)
    return state


def _collect(obj: ScriptObject, prefix: str, declared: dict[str, set[str]], out: dict[str, torch.Tensor]) -> None:
    allowed = declared.get(obj.qualified_name)
    for name, value in obj.attributes.items():
        if isinstance(value, torch.Tensor) and (allowed is None or name in allowed):
            out[prefix + name] = value.clone()  # own memory, not a view of the whole storage
        elif isinstance(value, ScriptObject):
            _collect(value, f"{prefix}{name}.", declared, out)


def _declared_tensors(archive: zipfile.ZipFile, prefix: str) -> dict[str, set[str]]:
    """``{qualified class name: names in its __parameters__ and __buffers__}`` read from ``code/``
    as text (never compiled). A class missing here keeps all its tensor attributes."""
    declared: dict[str, set[str]] = {}
    code = f"{prefix}code/"
    for name in archive.namelist():
        if not (name.startswith(code) and name.endswith(".py")):
            continue
        module = name[len(code) : -len(".py")].replace("/", ".")
        current = None
        for line in archive.read(name).decode("utf-8", errors="replace").splitlines():
            header = re.match(r"class (\w+)\(", line)
            if header:
                current = f"{module}.{header.group(1)}"
                declared.setdefault(current, set())
                continue
            listing = re.match(r"\s+__(parameters|buffers)__ = (\[.*\])\s*$", line)
            if listing and current is not None:
                try:
                    declared[current].update(str(n) for n in ast.literal_eval(listing.group(2)))
                except (ValueError, SyntaxError):
                    declared.pop(current, None)  # unreadable: keep every tensor attribute of that class
    return declared
