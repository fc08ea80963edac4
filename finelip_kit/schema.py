"""How a setting is declared: once, where its field is, with its kind and the values it takes.

Every config section (``FineLIPConfig`` and its towers, ``TrainConfig``, ``DataSpec``,
``SyntheticConfig``, ``EvalSpec``, a grid's ``GridParameters``) declares its fields with
``setting``::

    steps: int | None = setting(300, check=integer(1), kind=RESUMABLE)

and checks itself with ``validate(self)`` in ``__post_init__``: every value against its
annotation (an ``int`` field takes no ``1.5``, no ``True``, no ``"3"``; a number must be finite),
then (unless it is None, where the annotation allows None) against its ``check``, then the section's ``relations()`` (checks that read several
fields). The lists the kit used to keep by hand are read from the declarations:
``names(TrainConfig, BOOKKEEPING)`` is what a record leaves out and a resume may change.

Kinds:
    MEASURED     defines what a run measures (the default): recorded, and fixed on resume
    RESUMABLE    measured, and a resume may change it when named in ``train.resume_changes``
                 (the budget and the guard rails)
    BOOKKEEPING  where a run writes, how it reports, how fast it computes: left out of a
                 record's settings, free to differ on resume
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING
from typing import Any, Callable, Iterable, NamedTuple

MEASURED, RESUMABLE, BOOKKEEPING = "measured", "resumable", "bookkeeping"
KINDS = (MEASURED, RESUMABLE, BOOKKEEPING)


class Check(NamedTuple):
    """A test on one value and the words for what it wants (``"an integer >= 1"``)."""

    ok: Callable[[Any], bool]
    wanted: str


def setting(default: Any = MISSING, *, factory: Any = MISSING, kind: str = MEASURED, check: Check | None = None):
    """A dataclass field declared with its kind (``KINDS``) and the check on its value."""
    if kind not in KINDS:
        raise ValueError(f"a setting's kind must be one of {KINDS}, got {kind!r}")
    return dataclasses.field(default=default, default_factory=factory, metadata={"kind": kind, "check": check})


def kind_of(spec: dataclasses.Field) -> str:
    return spec.metadata.get("kind", MEASURED)


def names(cls, *kinds: str) -> tuple[str, ...]:
    """The fields of ``cls`` (a class or an instance) of any of ``kinds``, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls) if kind_of(f) in kinds)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(minimum: int, why: str = "") -> Check:
    """An integer (never a bool) >= ``minimum``."""
    return Check(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum,
                 f"an integer >= {minimum}{f' ({why})' if why else ''}")


def at_least(minimum: float, why: str = "") -> Check:
    """A number >= ``minimum`` (its type is the annotation's to check)."""
    return Check(lambda v: _is_number(v) and v >= minimum, f">= {minimum}{f' ({why})' if why else ''}")


def above(minimum: float) -> Check:
    return Check(lambda v: _is_number(v) and v > minimum, f"> {minimum}")


def number(low: float, high: float = math.inf) -> Check:
    """A finite number in ``[low, high]``."""
    return Check(lambda v: _is_number(v) and math.isfinite(v) and low <= v <= high,
                 f"a finite number in [{low}, {high}]")


def choice(options: Iterable[Any]) -> Check:
    """One of ``options``, named in the message as given (a tuple, or a sorted list)."""
    return Check(lambda v: v in options, f"one of {options!r}")


def validate(obj: Any, label: str = "") -> None:
    """Check every field of the dataclass ``obj`` (its annotation, then its ``check``), then its
    ``relations()``; the first failure is a ``ValueError`` that names the setting (``label`` +
    the field: ``"training setting steps"``, ``"eval.size"``), what it wants and the value."""
    for spec in dataclasses.fields(obj):
        value = getattr(obj, spec.name)
        problem = type_problem(value, spec.type)
        if problem:
            raise ValueError(f"{label}{spec.name} {problem}")
        check = spec.metadata.get("check")
        if check is not None and value is not None and not check.ok(value):  # None: allowed where the annotation says
            raise ValueError(f"{label}{spec.name} must be {check.wanted}, got {value!r}")
    for ok, message in getattr(obj, "relations", lambda: ())():
        if not ok:
            raise ValueError(message)


# The annotations a value is checked against; a field of any other type (a tuple, a nested
# config) has a check of its own.
_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "dict": (dict,)}
_NOUNS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string", "dict": "a mapping"}


def type_problem(value: Any, annotation: Any) -> str | None:
    """What is wrong with ``value`` for ``annotation`` (``"int | None"``), or None. Only plain
    annotations (int, float, bool, str, dict, None and their unions) are read."""
    if isinstance(annotation, type):  # a module without `from __future__ import annotations`
        annotation = annotation.__name__
    parts = [part.strip() for part in str(annotation).split("|")]
    if not parts or any(part not in _TYPES and part != "None" for part in parts):
        return None
    kinds = [part for part in parts if part != "None"]
    wanted = " or ".join(_NOUNS[k] for k in kinds) + (" or None" if "None" in parts else "")
    shown = wanted if kinds == ["bool"] else f"{wanted} ({annotation})"
    if value is None:
        return None if "None" in parts else f"must not be None (expected {annotation})"
    for kind in kinds:
        if isinstance(value, bool) and kind != "bool":
            continue  # True is an int in Python, never a count or a rate here
        if isinstance(value, _TYPES[kind]):
            if isinstance(value, float) and not math.isfinite(value):
                return f"must be finite, got {value!r}"
            return None
    return f"must be {shown}, got {value!r} ({type(value).__name__})"
