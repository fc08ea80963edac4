"""Pretrained weights in and out: the public functions, and the one model resolver ``load_model``.

In: transformers ``CLIPModel`` checkpoints (hub id or local dir), OpenAI-format ``.pt``
files (OpenAI's CLIP releases, JIT archives included, and Long-CLIP's ``longclip-*.pt``),
timm CLIP ViTs, and the kit's own ``save_pretrained`` directories.
Out: the kit's own checkpoints, a transformers ``CLIPTextModelWithProjection`` (for
diffusers and anything that takes a CLIP text encoder) and a full ``CLIPModel``.

Every foreign state dict passes through one mapping, ``convert_state_dict``: OpenAI keys
are renamed to transformers' keys, transformers' keys to the kit's. The text position
table comes out under ``TEXT_POSITIONS`` as the checkpoint's *effective* table (for
Long-CLIP: its first 20 rows from ``positional_embedding``, the rest from
``positional_embedding_res``), and is stretched to the configured context on loading.

The work is done in ``finelip_kit.weights`` (files, convert, load, export, assets), a layer
below the model; this module sits above both and names the functions users call. A model name
(a *spec*) is read in one place, ``parse_spec``: ``load_model`` builds what it names and
``model_config`` reads the config it would build, in the same order.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..weights.convert import (
    checkpoint_format,
    config_from_hf,
    config_from_openai,
    convert_state_dict,
    finelip_to_hf,
)
from ..weights.export import OPEN_CLIP_CONFIG, export_clip, export_open_clip, export_text_encoder
from ..weights.files import (
    CONFIG_FILE,
    LONGCLIP_KEEP,
    MODULES_CONFIG_FILE,
    MODULES_FILE,
    TEXT_POSITIONS,
    WEIGHTS_FILE,
    read_state_dict,
)
from .finelip import FineLIP
from ..weights.load import check_weights, load_converted, save_pretrained, timm_vision_tower

__all__ = [
    "CONFIG_FILE", "LONGCLIP_KEEP", "MODEL_FORMS", "MODULES_CONFIG_FILE", "MODULES_FILE", "TEXT_POSITIONS",
    "WEIGHTS_FILE", "check_weights", "checkpoint_format", "config_from_hf", "config_from_openai", "convert_state_dict",
    "export_clip", "export_open_clip", "export_text_encoder", "finelip_to_hf", "from_clip", "from_openai_checkpoint", "load_converted",
    "load_model", "load_pretrained", "model_config", "read_state_dict", "save_pretrained", "timm_vision_tower",
]


def from_clip(source: str | Path, **overrides: Any) -> FineLIP:
    """A FineLIP model from a transformers ``CLIPModel`` (hub id or local dir); see ``FineLIP.from_clip``."""
    return FineLIP.from_clip(source, **overrides)


def from_openai_checkpoint(path: str | Path, **overrides: Any) -> FineLIP:
    """A FineLIP model from an OpenAI-format ``.pt`` (OpenAI CLIP, Long-CLIP); see ``FineLIP.from_openai_checkpoint``."""
    return FineLIP.from_openai_checkpoint(path, **overrides)


def load_pretrained(directory: str | Path, **overrides: Any) -> FineLIP:
    """A ``save_pretrained`` directory or a packaged model name; see ``FineLIP.from_pretrained``."""
    return FineLIP.from_pretrained(directory, **overrides)


# ----------------------------------------------------------------------------- the one resolver
MODEL_FORMS = (
    "preset:<name>       a fresh model of a named architecture ({presets}); a bare preset name works too",
    "<packaged name>     a model shipped with the kit ({assets})",
    "<dir>               a finelip-kit checkpoint (config.json + model.safetensors, from save_pretrained)",
    "<dir> or hf:<id>    a transformers CLIPModel directory, or a hub id (online only); clip:<id> is the same",
    "<dir>               an open_clip model folder (open_clip_config.json + open_clip_model.safetensors)",
    "<file>.pt|.pth|.bin|.safetensors   an OpenAI / Long-CLIP checkpoint (TorchScript archives included)",
)


SPEC_KINDS = ("model", "preset", "hub", "open_clip", "finelip", "clip_dir", "file", "asset")


def parse_spec(spec: "str | Path | FineLIP") -> tuple[str, Any]:
    """``(kind, target)`` for a model name, the one reading of ``MODEL_FORMS`` (``SPEC_KINDS``), in
    this order: a built model; ``preset:NAME`` / ``hf:ID`` / ``clip:ID`` (explicit); an existing path
    (an open_clip folder, a finelip-kit checkpoint, a transformers CLIP directory, a checkpoint file);
    a packaged model name; a bare preset name; an ``org/name`` hub id. Anything else is an error
    that lists the forms and the closest names, without a hub call."""
    from .config import PRESETS, closest
    from ..weights.assets import asset_names, asset_path

    if isinstance(spec, FineLIP):
        return "model", spec
    text = str(spec)
    kind, _, rest = text.partition(":")
    if kind == "preset" and rest:
        if rest not in PRESETS:
            raise ValueError(f"unknown preset {rest!r} in model {text!r}; presets: {sorted(PRESETS)}")
        return "preset", rest
    if kind in ("hf", "clip") and rest:
        return "hub", rest
    path = Path(text).expanduser()
    if path.is_dir():
        config = path / CONFIG_FILE
        if (path / OPEN_CLIP_CONFIG).is_file():
            return "open_clip", path
        if (path / WEIGHTS_FILE).is_file() and config.is_file() and '"finelip_kit_version"' in config.read_text():
            return "finelip", path
        if config.is_file():
            return "clip_dir", str(path)
        raise FileNotFoundError(
            f"model directory {text!r} holds no {CONFIG_FILE}: a finelip-kit checkpoint (save_pretrained) or a "
            f"transformers CLIP directory was expected"
        )
    if path.is_file():
        return "file", path
    if asset_path(text) is not None:
        return "asset", text
    if text in PRESETS:
        return "preset", text
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text) and not text.startswith((".", "/")):
        return "hub", text  # transformers says clearly when it is offline
    # a looser cutoff than for setting keys: model names are short (tni → tiny)
    close = closest(text, sorted(PRESETS) + asset_names() + [f"preset:{p}" for p in PRESETS], cutoff=0.5)
    forms = "\n  ".join(MODEL_FORMS).format(presets=", ".join(sorted(PRESETS)), assets=", ".join(asset_names()))
    raise ValueError(
        f"no model {text!r}: it is not a preset, a packaged model, an existing file or directory, or a hub id "
        f"(org/name).{f' Did you mean {close}?' if close else ''} A model can be named as:\n  {forms}"
    )


def load_model(spec: "str | Path | FineLIP", **overrides: Any) -> FineLIP:
    """The one way the kit turns a name into a model — the CLI, notebooks, grid, viz and export
    all call it. ``spec``: see ``MODEL_FORMS`` and ``parse_spec`` (the order names are tried in).
    ``overrides``: config keys (``atrm_k=8``, ``**{"text.context_length": 248}``) applied while loading.
    """
    from .finelip import create_model

    kind, target = parse_spec(spec)
    if kind == "model":
        if overrides:
            raise ValueError("load_model(model, **overrides): a built model cannot be reconfigured; pass a name or path")
        return target
    if kind == "preset":
        return create_model(target, **overrides)
    if kind in ("hub", "clip_dir"):
        return from_clip(target, **overrides)
    if kind == "open_clip":
        from ..weights.load import from_open_clip

        return from_open_clip(FineLIP, target, **overrides)
    if kind in ("finelip", "asset"):
        return load_pretrained(target, **overrides)
    return from_openai_checkpoint(target, **overrides)  # "file"


def model_config(spec: "str | Path", **overrides: Any):
    """The config ``load_model(spec, **overrides)`` builds, read without loading any weights,
    for a preset, a packaged model or a finelip-kit checkpoint; None for the other forms (and for
    names that are not a model: ``load_model`` says what is wrong with those)."""
    from .config import preset
    from ..weights.assets import asset_path
    from ..weights.load import read_config

    try:
        kind, target = parse_spec(spec)
    except (ValueError, FileNotFoundError):
        return None
    if kind == "preset":
        return preset(target, **overrides)
    if kind not in ("finelip", "asset"):
        return None
    directory = target if kind == "finelip" else asset_path(target)
    try:
        config = read_config(directory / CONFIG_FILE)
    except ValueError:  # one of another kit version
        return None
    return config.replace(**{"text.pretrained_context": config.text.positions, **overrides}) if overrides else config
