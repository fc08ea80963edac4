"""A grid point's parameters: the grid notebook's short names, checked before anything runs,
and their translation into the settings vocabulary (``finelip_kit.settings``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..model.config import LOSSES, SCORE_MODES
from .paths import check_name, name_from
from ..math.positional import STRETCH_MODES
from .presets import preset_settings
from ..schema import BOOKKEEPING as _WHERE, at_least, choice, names, setting, validate
from .settings import ALIASES, SettingError, from_short_names, normalise

CHOICES = {"pe_mode": STRETCH_MODES, "loss": LOSSES, "negatives": ("sum", "hardest"), "score_mode": SCORE_MODES}


DEFAULT_PRESET = "synthetic-tiny"
_PRESET_SETTINGS = preset_settings(DEFAULT_PRESET)


def _choice(short: str):
    return choice(sorted(CHOICES[short]))


def _preset(short: str) -> Any:
    """The default of the grid parameter ``short``: the ``synthetic-tiny`` run preset's value (presets.py),
    read there, never restated here."""
    return _PRESET_SETTINGS[ALIASES[short]]


@dataclass(frozen=True)
class GridParameters:
    """Every parameter of a grid point, with the CPU defaults of the ``synthetic-tiny`` run preset.

    The short names are aliases of dotted settings (``settings.ALIASES``: ``atrm_k`` is
    ``model.atrm_k``, ``pe_mode`` is ``model.text.stretch``, ``lr`` is ``train.lr_backbone``);
    ``settings`` takes any other key of the vocabulary (``{"data.differing_objects": 3}``)."""

    preset: str = DEFAULT_PRESET
    dataset: str = _preset("dataset")  # "synthetic", a dataset name (urban1k, docci, ...) or a path
    data_root: str | None = None
    use_atrm: bool = _preset("use_atrm")
    atrm_k: int = setting(_preset("atrm_k"), check=at_least(1))
    atrm_k_text: int | None = setting(None, check=at_least(1))  # None: same as atrm_k
    use_clim: bool = _preset("use_clim")
    pe_mode: str = setting(_preset("pe_mode"), check=_choice("pe_mode"))  # position stretching: kps | linear | none | scratch
    context_length: int = setting(_preset("context_length"), check=at_least(1))
    loss: str = setting(_preset("loss"), check=_choice("loss"))
    fine_weight: float = setting(_preset("fine_weight"), check=at_least(0))
    # hardest: switch from sum to hardest negatives after `hardest_after_steps`
    negatives: str = setting("sum", check=_choice("negatives"))
    hardest_after_steps: int = setting(60, check=at_least(0))
    group_batches: bool = False  # batches of whole hard-negative groups (synthetic data)
    score_mode: str = setting("global", check=_choice("score_mode"))  # the scoring mode of the summary's headline (every mode is recorded)
    steps: int | None = setting(_preset("steps"), check=at_least(1))
    train_minutes: float | None = setting(None, check=at_least(0))  # train on wall time instead of steps
    batch_size: int = setting(_preset("batch_size"), check=at_least(2, "contrastive losses need negatives"))
    lr: float | None = setting(None, check=at_least(0))  # towers' learning rate; None: the preset's
    lr_new: float | None = setting(None, check=at_least(0))  # ATRM / new position rows / temperature; None: the preset's
    seed: int = 0
    eval_size: int = setting(_preset("eval_size"), check=at_least(1))  # test pairs (synthetic); None: the whole split
    # fine / fused R@k two-stage over the global top k (within-group stays exact)
    rerank_k: int | None = setting(None, check=at_least(1))
    reference: bool = _preset("reference")  # also score the starting model as is (its original context)
    keep_model: bool = True  # save the fine-tuned model to <results_dir>/<run_name>/model (21 MB for tiny)
    settings: dict | None = None  # any other setting, by its dotted key: {"data.differing_objects": 3}
    # where a point writes, not what it measures: left out of its name and its `measured` parameters
    results_dir: str = setting("ablations/results", kind=_WHERE)
    run_name: str | None = setting(None, kind=_WHERE)  # None: named by the parameters that differ from the defaults
    progress: bool = setting(True, kind=_WHERE)

    def __post_init__(self) -> None:
        validate(self, "parameter ")
        if self.run_name is not None:
            check_name(self.run_name, "parameter run_name")
        self._extra_settings()  # unknown or aliased keys in `settings` are errors now, not at run time
        self.check_run()

    def relations(self):
        from ..data.datasets import source_info
        from .presets import RUN_PRESETS

        return [
            (self.steps is not None or self.train_minutes is not None, "set parameter steps or train_minutes (both are None)"),
            (self.pe_mode != "none" or self.context_length <= 77,
             f"parameter pe_mode 'none' keeps 77 positions; context_length must be <= 77, got "
             f"{self.context_length} (or choose pe_mode kps / linear / scratch)"),
            (self.use_clim or (self.loss == "global" and self.score_mode == "global"),
             f"use_clim=False leaves no fine-grained score: set loss='global' and score_mode='global' "
             f"too (got loss={self.loss!r}, score_mode={self.score_mode!r})"),
            (not self.group_batches or source_info(self.dataset).grouped,
             f"parameter group_batches needs data that declares hard-negative groups (dataset "
             f"'synthetic'); dataset {self.dataset!r} has none: set group_batches=False"),
            (self.preset in RUN_PRESETS, f"parameter preset must be one of {sorted(RUN_PRESETS)}, got {self.preset!r}"),
        ]

    def check_run(self) -> None:
        """Every value of the run this point makes, checked now (a bad ``settings`` entry fails
        the spec before any point runs): the recipe's settings and, where it can be read
        without loading weights (a preset, a packaged model, a checkpoint), the model config."""
        from ..model.pretrained import model_config
        from .recipe import RunSpec, resolve

        resolved = resolve(RunSpec(settings=self.to_settings(), preset=self.preset))
        model_config(resolved.model_source, **resolved.model_overrides)

    @property
    def name(self) -> str:
        return self.run_name or point_name(self.measured())

    def measured(self) -> dict[str, Any]:
        """The parameters that define the measurement (no output locations)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in BOOKKEEPING}

    def to_settings(self) -> dict[str, Any]:
        """The point as settings of the vocabulary: each short name through its alias, the
        hardest-negatives switch as ``train.hardest_after_steps``, then ``settings``."""
        out = from_short_names(dataclasses.asdict(self))
        out["train.keep_last"] = 1  # a point's checkpoints are removed once it is recorded
        return {**out, **self._extra_settings()}

    def model_overrides(self) -> dict[str, Any]:
        """The ``model.*`` part of ``to_settings`` (config keys without the prefix)."""
        return {k[len("model."):]: v for k, v in self.to_settings().items() if k.startswith("model.")}

    def _extra_settings(self) -> dict[str, Any]:
        extra = normalise(self.settings or {}, where="parameter settings")
        for key in (self.settings or {}):
            if key in ALIASES or key == "train.hardest_after_steps":
                raise SettingError(f"parameter settings: {key!r} is a grid parameter of its own; set it as "
                                   f"{[a for a, d in ALIASES.items() if key in (a, d)] or ['negatives', 'hardest_after_steps']} instead")
        dotted_aliases = set(ALIASES.values())
        for key in extra:
            if key in dotted_aliases:
                alias = next(a for a, d in ALIASES.items() if d == key)
                raise SettingError(f"parameter settings: {key!r} is the grid parameter {alias!r}; set {alias} instead")
        return extra


# Parameters that name *where* a point writes, not *what* it measures (declared on the fields above).
BOOKKEEPING = names(GridParameters, _WHERE)


def validate_parameters(**parameters: Any) -> GridParameters:
    """Check a grid point's parameters (names, types, values) before anything runs."""
    known = {f.name for f in dataclasses.fields(GridParameters)}
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise ValueError(f"unknown grid parameter(s) {unknown}; known: {sorted(known)} (any other setting goes in "
                         f"settings, by its dotted key: settings={{'data.differing_objects': 3}})")
    return GridParameters(**parameters)


def point_name(parameters: dict[str, Any], base: dict[str, Any] | None = None) -> str:
    """A file-safe name from the parameters that differ from ``base`` (default: the defaults);
    ``default`` if none do. ``settings`` entries count one by one (``data.differing_objects=3``).
    Unsafe characters (in paths) become ``_`` and an over-long name is shortened with a hash
    (``paths.name_from``); ``expand_points`` refuses a spec whose points clash."""
    base = {**GridParameters().measured(), **(base or {})}
    flat = {k: v for k, v in parameters.items() if k != "settings"}
    flat.update(parameters.get("settings") or {})
    base_flat = {k: v for k, v in base.items() if k != "settings"}
    base_flat.update(base.get("settings") or {})
    parts = [f"{k}={_short(v)}" for k, v in sorted(flat.items())
             if k not in BOOKKEEPING and base_flat.get(k, object()) != v]
    return name_from("-".join(parts)) if parts else "default"


def run_point(params: GridParameters, on_log=None) -> dict[str, Any]:
    """Train and evaluate one grid point through the one recipe; returns its record (also
    written to ``<results_dir>/<name>.json``). The point's checkpoints are removed once it is
    recorded; its model is kept with ``keep_model``."""
    from .recipe import RunSpec, run

    from .shipped import in_project

    spec = RunSpec(settings=params.to_settings(), preset=params.preset, name=check_name(params.name),
                   results_dir=str(in_project(params.results_dir)),  # from the project root, wherever the kernel starts
                   keep_model=params.keep_model, keep_checkpoints=False,
                   progress=params.progress, requested=params.measured())
    return run(spec, on_log=on_log).record


def _short(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)
