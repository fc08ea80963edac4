"""Loading weights into a model class (``cls``: ``FineLIP``, passed in — this layer never imports
the model, so ``FineLIP.from_*`` can call it without an import cycle), and the kit's own checkpoints."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..model.config import ADDED_KEYS, FineLIPConfig
from ..model.tokenizer import get_tokenizer
from .convert import checkpoint_format, config_from_hf, config_from_openai, convert_state_dict
from .files import CONFIG_FILE, MODULES_CONFIG_FILE, MODULES_FILE, TEXT_POSITIONS, WEIGHTS_FILE, _NEW_MODULES, _POSITION_KEYS, read_state_dict


# ----------------------------------------------------------------------------- loading into a model
def load_converted(
    model: nn.Module, weights: dict[str, torch.Tensor], source: str, optional: tuple[str, ...] = ()
) -> nn.Module:
    """Load kit-named ``weights`` (from ``convert_state_dict``) into ``model``: the text position
    table is stretched to the model's context; ATRM stays freshly initialised unless given."""
    weights = dict(weights)
    table = weights.pop(TEXT_POSITIONS, None)
    if table is None:
        raise ValueError(f"{source}: no text position table ({TEXT_POSITIONS}) in the checkpoint")
    text_config = model.config.text
    if table.shape[0] != text_config.pretrained_context:
        raise ValueError(
            f"{source}: the text position table has {table.shape[0]} rows but the config's "
            f"text.pretrained_context is {text_config.pretrained_context}"
        )
    model.text.set_position_table(table.to(model.text.position_table.dtype))
    model.text.stretch_positions(text_config)
    expected = {k: v for k, v in model.state_dict().items() if k not in _POSITION_KEYS}
    check_weights(expected, weights, source, optional=_NEW_MODULES + optional)
    model.load_state_dict(weights, strict=False)
    return model


def check_weights(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], source: str, optional=()) -> None:
    missing = sorted(k for k in expected if k not in given and not k.startswith(optional))
    extra = sorted(k for k in given if k not in expected)
    shapes = [f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in sorted(given) if k in expected and given[k].shape != expected[k].shape]
    dtypes = [f"{k}: checkpoint {given[k].dtype} vs model {expected[k].dtype}" for k in sorted(given)
              if k in expected and expected[k].is_floating_point() and not given[k].is_floating_point()]
    problems = []
    if dtypes:
        problems.append("non-floating-point weights (a corrupt or foreign file?): " + "; ".join(dtypes[:8])
                        + (f" ... ({len(dtypes)})" if len(dtypes) > 8 else ""))
    if missing:
        problems.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''} ({len(missing)})")
    if extra:
        problems.append(f"unexpected keys {extra[:8]}{' ...' if len(extra) > 8 else ''} ({len(extra)})")
    if shapes:
        problems.append("shape mismatches: " + "; ".join(shapes[:8]))
    if problems:
        raise ValueError(f"{source} does not fit this architecture: " + " | ".join(problems))


def from_clip(cls, source: str | Path, **overrides: Any) -> nn.Module:
    """A FineLIP model from a transformers ``CLIPModel`` (hub id or local dir); see ``FineLIP.from_clip``."""
    from transformers import CLIPModel

    vision_timm = overrides.pop("vision_timm", None)
    try:
        clip = CLIPModel.from_pretrained(str(source))
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"refused to load the transformers checkpoint {str(source)!r}: its weights file holds Python objects other "
            f"than tensors, which could run code when unpickled; use a safetensors copy. Detail: "
            f"{str(error).splitlines()[-1].strip()[:200]}"
        ) from None
    except (OSError, ValueError) as error:
        raise OSError(
            f"could not load a transformers CLIPModel from {str(source)!r}: {str(error).splitlines()[0]}. "
            f"Pass a directory with config.json and the weights (or a hub id when online)"
        ) from error
    weights = convert_state_dict(clip.state_dict())
    saved_config = Path(str(source)) / MODULES_CONFIG_FILE
    if saved_config.is_file():  # an export_clip directory: the kit's own config and modules
        rows = clip.config.text_config.max_position_embeddings
        config = FineLIPConfig.from_dict(json.loads(saved_config.read_text())).replace(
            **{"text.pretrained_context": rows, "text.context_length": rows, **overrides}
        )
    else:
        config = config_from_hf(clip.config, **overrides)
    optional: tuple[str, ...] = ()
    if vision_timm is not None:
        spec = (vision_timm,) if isinstance(vision_timm, str) else tuple(vision_timm)
        name, file, architecture = (spec + (None, None))[:3]
        vision = timm_vision_tower(name, file, embed_dim=config.embed_dim, architecture=architecture)
        config = config.replace(**_vision_fields(vision, name))
        weights = {k: v for k, v in weights.items() if not k.startswith("vision.")}
        optional = ("vision.",)
    model = load_converted(cls(config), weights, str(source), optional=optional)
    if vision_timm is not None:
        model.vision = vision
    modules = Path(str(source)) / MODULES_FILE
    if modules.is_file():
        _load_modules(model, modules)
    return model


def _vision_fields(tower, name: str) -> dict[str, Any]:
    """The config's vision fields read off a timm model, so transforms and saved configs match it."""
    vit = tower.vit
    cfg = getattr(vit, "pretrained_cfg", {}) or {}
    fields = {
        "vision.timm_name": name,
        "vision.image_size": int(vit.patch_embed.img_size[0]),
        "vision.patch_size": int(vit.patch_embed.patch_size[0]),
        "vision.width": int(vit.embed_dim),
        "vision.depth": len(vit.blocks),
        "vision.heads": int(vit.blocks[0].attn.num_heads),
    }
    if "mean" in cfg and "std" in cfg:
        fields.update({"vision.mean": tuple(cfg["mean"]), "vision.std": tuple(cfg["std"])})
    return fields


def from_openai_checkpoint(cls, path: str | Path, **overrides: Any) -> nn.Module:
    """A FineLIP model from an OpenAI-format ``.pt`` (OpenAI CLIP, Long-CLIP); see ``FineLIP.from_openai_checkpoint``."""
    state_dict = read_state_dict(path)
    if checkpoint_format(state_dict) != "openai":
        raise ValueError(f"{str(path)!r} is not an OpenAI-format CLIP checkpoint (no visual.conv1.weight)")
    config = config_from_openai(state_dict, **overrides)
    return load_converted(cls(config), convert_state_dict(state_dict), str(path))


def from_open_clip(cls, directory: str | Path, **overrides: Any) -> nn.Module:
    """A FineLIP model from an open_clip model folder (``open_clip_config.json`` + weights in
    open_clip's layout, as open_clip's ``local-dir:`` and hub folders hold): the architecture
    (activation, head widths, context) is read from the config, not guessed. The model is loaded
    as it is, at its own context; ``overrides`` stretch it (``**{"text.context_length": 248,
    "text.stretch": "kps"}``)."""
    from .export import OPEN_CLIP_CONFIG

    directory = Path(directory)
    try:
        model_cfg = json.loads((directory / OPEN_CLIP_CONFIG).read_text())["model_cfg"]
        vision_cfg, text_cfg = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{str(directory / OPEN_CLIP_CONFIG)!r} is not an open_clip config ({error})") from None
    unsupported = sorted(set(vision_cfg) - {"image_size", "layers", "width", "head_width", "mlp_ratio", "patch_size"}
                         | set(text_cfg) - {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"})
    if "timm_model_name" in vision_cfg or "hf_model_name" in text_cfg or unsupported:
        raise ValueError(f"open_clip model in {str(directory)!r} is not a plain CLIP ViT the kit's towers can hold "
                         f"(options {unsupported or 'timm / hf towers'})")
    where = str(directory / OPEN_CLIP_CONFIG)
    for section, cfg, keys in (("vision_cfg", vision_cfg, ("image_size", "layers", "width", "head_width", "patch_size")),
                               ("text_cfg", text_cfg, ("context_length", "vocab_size", "width", "heads", "layers"))):
        for key in keys:
            value = cfg.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{where!r}: {section}.{key} must be a whole number >= 1, got {value!r}")
        ratio = cfg.get("mlp_ratio", 4.0)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1e3:
            raise ValueError(f"{where!r}: {section}.mlp_ratio must be a number > 0, got {ratio!r}")
    if vision_cfg.get("width", 768) % vision_cfg.get("head_width", 64):
        raise ValueError(f"{where!r}: vision_cfg.width {vision_cfg.get('width')} is not a multiple of head_width "
                         f"{vision_cfg.get('head_width', 64)}")
    names = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin")
    weights = next((directory / n for n in names if (directory / n).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"open_clip folder {str(directory)!r} holds no weights file ({', '.join(names)})")
    state_dict = read_state_dict(weights)
    if "positional_embedding" not in state_dict or "visual.conv1.weight" not in state_dict:
        raise ValueError(f"{str(weights)!r} is not in open_clip's CLIP layout (no positional_embedding / "
                         f"visual.conv1.weight)")
    act = "quick_gelu" if model_cfg.get("quick_gelu") else "gelu"
    architecture = {"vision.act": act, "text.act": act,
                    "vision.heads": vision_cfg["width"] // vision_cfg.get("head_width", 64),
                    "text.heads": text_cfg.get("heads", 8),
                    # the model as it is (a 77-token CLIP stays one; stretch it with overrides)
                    "text.context_length": state_dict["positional_embedding"].shape[0], "text.stretch": "none"}
    config = config_from_openai(state_dict, **{**architecture, **overrides})
    return load_converted(cls(config), convert_state_dict(state_dict), str(weights))


def timm_vision_tower(
    name: str, file: str | Path | None = None, embed_dim: int | None = None, architecture: dict[str, Any] | None = None
):
    """A ``VisionTower`` from a timm CLIP ViT name, with weights from ``file`` (timm converts
    OpenAI / open_clip ``visual.*`` keys) or, without a file, from the hub when online.
    ``architecture``: keyword overrides for ``timm.create_model`` (``depth=...``)."""
    import timm

    from ..model.towers import VisionTower

    kwargs = dict(architecture or {})
    overlay: dict[str, Any] = {}
    if embed_dim:
        # Also in the overlay: timm drops a head whose size differs from the pretrained config's.
        kwargs["num_classes"] = overlay["num_classes"] = embed_dim
    if file is not None:
        if not Path(file).is_file():
            raise FileNotFoundError(f"timm weights file {str(file)!r} does not exist")
        overlay["file"] = str(file)
    vit = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay or None, **kwargs)
    return VisionTower(vit)


# ----------------------------------------------------------------------------- own checkpoints
def save_pretrained(model: nn.Module, directory: str | Path, tokenizer=None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and tokenizer files to ``directory``
    (``tokenizer=None``: CLIP's bundled one at the model's context; ``False``: no tokenizer files)."""
    from safetensors.torch import save_file

    from .._version import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(
        json.dumps({"finelip_kit_version": __version__, "config": model.config.to_dict()}, indent=2)
    )
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    if tokenizer is not False:
        (tokenizer or get_tokenizer(context_length=model.context_length)).save_pretrained(directory)
    return directory


def load_pretrained(cls, directory: str | Path, **overrides: Any) -> nn.Module:
    """Restore a ``save_pretrained`` directory exactly, or, with ``overrides``, start a new
    configuration from it: the position table is re-stretched to a new context, new modules
    (ATRM) whose shapes changed start fresh, everything else is loaded and must fit.
    ``directory`` may also name a model packaged with the kit (``"tiny-synthetic-clip"``)."""
    from .assets import asset_names, asset_path, is_compact, load_asset_weights

    packaged = asset_path(str(directory)) if not Path(directory).exists() else None
    if packaged is None and not Path(directory).exists() and "/" not in str(directory):
        raise FileNotFoundError(f"{str(directory)!r} is neither a checkpoint directory nor a packaged model ({asset_names()})")
    directory = packaged or Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{str(path)!r} does not exist: a finelip-kit checkpoint directory holds {CONFIG_FILE} and {WEIGHTS_FILE} "
                f"(written by model.save_pretrained); for a transformers CLIP use FineLIP.from_clip"
            )
    config = read_config(config_path)
    weights = load_asset_weights(directory) if is_compact(directory) else read_state_dict(weights_path)
    if not overrides:
        model = cls(config)
        check_weights(model.state_dict(), weights, str(weights_path))
        model.load_state_dict(weights, strict=True)
        return model
    table = torch.cat([weights.pop(k) for k in _POSITION_KEYS if k in weights])
    new_config = config.replace(**{"text.pretrained_context": table.shape[0], **overrides})
    model = cls(new_config)
    shapes = model.state_dict()
    fresh = [k for k in weights if k.startswith(_NEW_MODULES) and (k not in shapes or shapes[k].shape != weights[k].shape)]
    for key in fresh:
        del weights[key]
    return load_converted(model, {**weights, TEXT_POSITIONS: table}, str(weights_path))


def read_config(path: str | Path) -> FineLIPConfig:
    """The config of a finelip-kit checkpoint's ``config.json``, its keys checked against this version."""
    try:
        data = json.loads(Path(path).read_text())["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{str(path)!r} is not a finelip-kit config ({error})") from error
    _check_config_keys(data, str(path))
    return FineLIPConfig.from_dict(data)


def _check_config_keys(data: dict[str, Any], source: str) -> None:
    import dataclasses

    from ..model.config import TextConfig, VisionConfig

    for section, cls in ((None, FineLIPConfig), ("vision", VisionConfig), ("text", TextConfig)):
        given = data if section is None else data.get(section, {})
        fields = {f.name for f in dataclasses.fields(cls)}
        added = set(ADDED_KEYS) if section is None else set()  # newer keys whose default is the old behaviour
        missing, extra = sorted(fields - set(given) - added), sorted(set(given) - fields)
        where = "config" if section is None else f"config.{section}"
        if missing or extra:
            raise ValueError(
                f"{source}: {where} does not match this finelip-kit version: missing keys {missing}, unknown keys {extra}. "
                f"It was saved by another version; add or remove those keys (defaults are in finelip_kit/config.py)"
            )


def _load_modules(model: nn.Module, path: Path) -> None:
    weights = read_state_dict(path)
    expected = {k: v for k, v in model.state_dict().items() if k.startswith(_NEW_MODULES)}
    check_weights(expected, weights, str(path))
    model.load_state_dict(weights, strict=False)


