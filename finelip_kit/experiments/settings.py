"""The one settings vocabulary: every setting of a run is a dotted key in one of four sections.

    model.<key>   the model: ``model.source`` (anything ``load_model`` takes) and every
                  ``FineLIPConfig`` key (``model.atrm_k``, ``model.text.context_length``)
    train.<key>   every ``TrainConfig`` field (``train.steps``, ``train.fine_ramp_epochs``)
    data.<key>    the data (``DataSpec``: ``data.source``, ``data.root``, splits) and, for the
                  synthetic benchmark, every ``SyntheticConfig`` field (``data.differing_objects``)
    eval.<key>    the evaluation (``EvalSpec``: ``eval.size``, ``eval.rerank_k``, ...)

The CLI's ``--set``, the grid notebook, grid YAML and the recipe all go through
``normalise``: it maps the grid notebook's short names (``ALIASES``: ``atrm_k``, ``pe_mode``,
``lr``) and unambiguous bare field names (``warmup_steps``) to their dotted key, and refuses
anything else with a ``SettingError`` that names the key, its section and the closest names.
Values are checked by the dataclass each section builds (``FineLIPConfig``, ``TrainConfig``, ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from ..data.captions import PROBES
from ..model.config import DEFAULT_CHUNK_BYTES, SCORE_MODES, FineLIPConfig, SettingError, closest
from .. import schema
from ..schema import Check, choice, integer, names, setting, validate

SECTIONS = ("model", "train", "data", "eval")

# The grid notebook's documented short names (papermill -p atrm_k 16) → their dotted key.
ALIASES: dict[str, str] = {
    "use_atrm": "model.use_atrm",
    "atrm_k": "model.atrm_k",
    "atrm_k_text": "model.atrm_k_text",
    "use_clim": "model.use_clim",
    "pe_mode": "model.text.stretch",
    "context_length": "model.text.context_length",
    "loss": "model.loss",
    "fine_weight": "model.fine_weight",
    "score_mode": "model.score_mode",
    "hardest_after_steps": "train.hardest_after_steps",
    "group_batches": "train.group_batches",
    "steps": "train.steps",
    "train_minutes": "train.train_minutes",
    "batch_size": "train.batch_size",
    "lr": "train.lr_backbone",
    "lr_new": "train.lr_new",
    "seed": "train.seed",
    "dataset": "data.source",
    "data_root": "data.root",
    "eval_size": "eval.size",
    "rerank_k": "eval.rerank_k",
    "reference": "eval.reference",
}
# Old names of settings: still accepted, with a DeprecationWarning that names the new one.
DEPRECATED: dict[str, str] = {"train.eval_modes": "eval.modes", "eval_modes": "eval.modes"}


@dataclass(frozen=True)
class DataSpec:
    """Where a run's pairs come from (the ``data.*`` settings besides the synthetic ones)."""

    source: str = "synthetic"  # "synthetic", a dataset name (urban1k, docci, ...) or a path
    root: str | None = None  # where a named dataset lies
    train_split: str = "train"
    val_split: str | None = None  # real data: the validation split (synthetic: always "val")
    test_split: str | None = "test"  # None: no test evaluation
    eval_source: str | None = None  # evaluate on other data than `source` (same splits)
    caption_field: str = "caption"  # train on another caption field (e.g. alt_caption, short_caption)
    on_error: str = setting("raise", check=choice(("raise", "skip")))  # bad records: raise, or skip and count (load_pairs)
    synthetic: dict = setting(factory=dict)  # SyntheticConfig fields (data.<field>)

    def __post_init__(self) -> None:
        validate(self, "data.")

    def relations(self):
        from ..data.datasets import source_info

        return [(not self.synthetic or source_info(self.source).generated,
                 f"data settings {sorted(self.synthetic)} apply to the synthetic data only, not data.source {self.source!r}")]


_PROBES = Check(lambda v: all(p in PROBES for p in v) and len(set(v)) == len(v), f"a list of distinct probes among {PROBES}")
_MODES = Check(lambda v: v is None or (len(v) > 0 and all(m in SCORE_MODES for m in v)), f"None or among {SCORE_MODES}")


@dataclass(frozen=True)
class EvalSpec:
    """How a run is evaluated at the end (the ``eval.*`` settings)."""

    # test pairs (synthetic: drawn; real data: the first `size`); None: the whole split; 0: none
    size: int | None = setting(1000, check=integer(0))
    # validation pairs evaluated at the end (chosen on; 0: none, None: the whole split)
    val_size: int | None = setting(0, check=integer(0))
    modes: tuple | None = setting(None, check=_MODES)  # None: every mode the model has (also the periodic evaluations')
    rerank_k: int | None = setting(None, check=integer(1))  # fine / fused R@k two-stage over the global top k
    batch_size: int = setting(64, check=integer(1))
    reference: bool = True  # also score the starting model as is (its original context) on the test pairs
    alt_captions: bool = False  # synthetic: also global recall with the alt-text captions (alt/global/...)
    binding: bool = False  # synthetic: also `size` test pairs in binding groups (binding/<mode>/group/t2i, ...)
    # sentence-level robustness probes on the test captions (evaluation.caption_probes): any of move_first,
    # drop_first, prepend_filler, shuffle, first_k (probe/<probe>/<mode>/..., prefix/k<k>/..., prefix/<mode>/himo@K)
    probes: tuple = setting((), check=_PROBES)
    probe_position: int = setting(2, check=integer(0))  # move_first: where the first sentence goes (0-based)
    probe_fillers: int = setting(2, check=integer(0))  # prepend_filler: how many "This is a photo." sentences
    prefix_k: int = setting(5, check=integer(1))  # first_k: k = 1 ... prefix_k sentences, and himo@prefix_k
    # memory the CLIM scoring may use at once (scores do not depend on it)
    chunk_bytes: int = setting(DEFAULT_CHUNK_BYTES, check=integer(1))

    def __post_init__(self) -> None:
        if self.modes is not None and not isinstance(self.modes, (str, bytes)):
            object.__setattr__(self, "modes", tuple(self.modes))
        if isinstance(self.probes, (list, tuple)):
            object.__setattr__(self, "probes", tuple(self.probes))
        validate(self, "eval.")


@lru_cache(maxsize=1)
def bookkeeping_keys() -> tuple[str, ...]:
    """The dotted keys that say where a run writes, how it reports or how fast it computes, not what it
    measures (``schema.BOOKKEEPING`` where each field is declared): left out of a record's settings
    (two runs that differ only here measured the same thing)."""
    from ..train import TrainConfig

    return tuple(f"{section}.{name}" for section, cls in (("train", TrainConfig), ("data", DataSpec), ("eval", EvalSpec))
                 for name in names(cls, schema.BOOKKEEPING))


@lru_cache(maxsize=1)
def known_keys() -> dict[str, tuple[str, ...]]:
    """Section → its keys (without the section prefix)."""
    from ..data.synthetic import SyntheticConfig
    from ..train import TrainConfig

    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    model = ["source"] + FineLIPConfig.keys()
    data = [n for n in names(DataSpec) if n != "synthetic"] + names(SyntheticConfig)
    return {"model": tuple(model), "train": tuple(names(TrainConfig)), "data": tuple(data), "eval": tuple(names(EvalSpec))}


def all_keys() -> list[str]:
    return [f"{section}.{key}" for section, keys in known_keys().items() for key in keys]


def canonical(key: str) -> str:
    """The dotted key a name stands for: itself, an alias, or the one section that has a bare
    field of that name (``warmup_steps`` → ``train.warmup_steps``, ``text.stretch`` →
    ``model.text.stretch``). Raises ``SettingError`` otherwise."""
    if not isinstance(key, str) or not key:
        raise SettingError(f"a setting key must be a non-empty string, got {key!r}")
    if key in ALIASES:
        return ALIASES[key]
    if key in DEPRECATED:
        import warnings

        warnings.warn(f"the setting {key!r} is now {DEPRECATED[key]!r} (one setting for the evaluation modes, "
                      f"periodic and final); write {DEPRECATED[key]}", DeprecationWarning, stacklevel=3)
        return DEPRECATED[key]
    sections = known_keys()
    section, _, rest = key.partition(".")
    if section == "model" and rest and rest != "source":
        return f"model.{FineLIPConfig.key(rest)}"
    if section in sections and rest:
        if rest in sections[section]:
            return key
        close = closest(rest, sections[section])
        if rest in ALIASES and ALIASES[rest].startswith(f"{section}."):
            close = [ALIASES[rest][len(section) + 1:]] + close  # lr → train.lr_backbone
        raise SettingError(f"unknown setting {key!r}: section {section!r} has no key {rest!r}"
                           + (f"; did you mean {[f'{section}.{c}' for c in close]}?" if close else "")
                           + f" ({section}.* keys: {', '.join(sections[section])})")
    owners = [f"{s}.{key}" for s, keys in sections.items() if s != "model" and key in keys]
    model_keys = FineLIPConfig.keys()  # a config key, or a tower's field (stretch → model.text.stretch)
    owners += [f"model.{k}" for k in (key, f"vision.{key}", f"text.{key}") if k in model_keys]
    if len(owners) == 1:
        return owners[0]
    if owners:
        raise SettingError(f"setting {key!r} is ambiguous: write {' or '.join(owners)}")
    close = closest(key, list(ALIASES) + all_keys())
    raise SettingError(f"unknown setting {key!r}: settings are dotted keys in the sections {list(SECTIONS)} "
                       f"(model.atrm_k, train.steps, data.differing_objects, eval.size) or the short names "
                       f"{sorted(ALIASES)}" + (f"; did you mean {close}?" if close else ""))


def normalise(settings: Mapping[str, Any], where: str = "settings") -> dict[str, Any]:
    """``settings`` with every key in its dotted form (see ``canonical``); two names for one
    key with different values are an error."""
    if not isinstance(settings, Mapping):
        raise SettingError(f"{where} must be a mapping of setting keys to values, got {type(settings).__name__}")
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key, value in settings.items():
        name = canonical(key)
        if name in out and out[name] != value:
            raise SettingError(f"{where}: {given[name]!r}={out[name]!r} and {key!r}={value!r} set the same setting "
                               f"{name!r}; keep one")
        out[name], given[name] = value, key
    return out


def by_section(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Normalised settings grouped by section, prefixes removed: ``{"model": {"text.stretch": ...}, ...}``."""
    grouped: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for key, value in normalise(settings).items():
        section, _, rest = key.partition(".")
        grouped[section][rest] = value
    return grouped


def from_short_names(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Settings from the grid notebook's short names (``ALIASES``); names that are not aliases
    are left out. ``negatives`` and ``hardest_after_steps`` together are one setting, the
    trainer's switch ``train.hardest_after_steps`` (None: sum negatives throughout); a learning
    rate of None means the preset's (left out)."""
    out = {ALIASES[k]: v for k, v in parameters.items() if k in ALIASES and k != "hardest_after_steps"}
    if "negatives" in parameters or "hardest_after_steps" in parameters:
        hardest = parameters.get("negatives", "sum") == "hardest"
        after = parameters.get("hardest_after_steps")
        if hardest and after is None:
            raise SettingError("negatives='hardest' needs hardest_after_steps (0: hardest from the first step)")
        out["train.hardest_after_steps"] = after if hardest else None
    for key in ("train.lr_backbone", "train.lr_new"):
        if key in out and out[key] is None:
            del out[key]
    return out


def short_name(key: str) -> str:
    """How a dotted key is shown in tables and the explorer: its short alias if it has one."""
    return _short_names().get(key, key)


@lru_cache(maxsize=1)
def _short_names() -> dict[str, str]:
    return {dotted: alias for alias, dotted in ALIASES.items()}


def flatten(section: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``("model", {"text": {"stretch": "kps"}, "atrm_k": 16})`` → ``{"model.text.stretch": "kps", "model.atrm_k": 16}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and section == "model" and key in ("vision", "text"):
            out.update({f"{section}.{key}.{k}": v for k, v in value.items()})
        else:
            out[f"{section}.{key}"] = value
    return out
