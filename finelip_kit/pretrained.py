"""Pretrained weights in and out.

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
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from .config import FineLIPConfig
from .model import FineLIP
from .tokenizer import get_tokenizer
from .torchscript import UnsafeArchiveError, is_torchscript, read_torchscript_state_dict

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODULES_FILE = "finelip_modules.safetensors"  # ATRM etc. beside an exported CLIPModel
MODULES_CONFIG_FILE = "finelip_config.json"
TEXT_POSITIONS = "text.transformer.embeddings.position_embedding.weight"
LONGCLIP_KEEP = 20  # Long-CLIP: rows < 20 from positional_embedding, the rest from positional_embedding_res
_POSITION_KEYS = ("text.transformer.embeddings.position_embedding.frozen", "text.transformer.embeddings.position_embedding.trainable")
_NEW_MODULES = ("image_atrm.", "text_atrm.")


# ----------------------------------------------------------------------------- reading files
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, read without running any code from it.

    ``.safetensors``; a TorchScript archive (OpenAI's releases: its tensors are read by
    ``torchscript.read_torchscript_state_dict``, which never runs the archive's code); or a
    ``torch.save`` file, loaded with ``weights_only=True`` so that a pickle carrying arbitrary
    objects is refused. A ``{"state_dict": ...}`` wrapper is unwrapped. (Loading into a
    model then refuses integer or boolean tensors where the model has floating-point ones.)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                return load_file(str(path))
            except SafetensorError as error:
                raise ValueError(f"{str(path)!r} is not a valid safetensors file ({error}); was another format "
                                 f"renamed to .safetensors?") from None
        if is_torchscript(path):
            return read_torchscript_state_dict(path)
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except UnsafeArchiveError as error:
        raise ValueError(
            f"refused to load TorchScript archive {str(path)!r}: {error}. The kit reads only the tensors of plain "
            f"module archives (as OpenAI's releases are); re-save a trusted model's state_dict() as safetensors"
        ) from error
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"refused to load {str(path)!r}: it holds Python objects other than tensors, which could run "
            f"code when unpickled. Load it yourself only if you trust it, and save its state_dict() "
            f"(torch.save(model.state_dict(), ...) or safetensors). Detail: {str(error).splitlines()[0]}"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"could not read checkpoint {str(path)!r} ({type(error).__name__}: {str(error).splitlines()[0]}); "
            f"the file may be truncated or not a PyTorch / safetensors checkpoint"
        ) from error
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError(f"checkpoint {str(path)!r} holds {type(loaded).__name__}, not a state dict of tensors")
    return {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}




# ----------------------------------------------------------------------------- the one mapping
def checkpoint_format(state_dict: dict[str, torch.Tensor]) -> str:
    """``"openai"`` (OpenAI / open_clip / Long-CLIP keys), ``"hf"`` (transformers CLIPModel) or ``"finelip"``."""
    if "visual.conv1.weight" in state_dict or "visual.class_embedding" in state_dict:
        return "openai"
    if any(k.startswith("vision_model.") for k in state_dict) or any(k.startswith("text_model.") for k in state_dict):
        return "hf"
    if any(k.startswith("vision.vit.") for k in state_dict):
        return "finelip"
    raise ValueError(
        f"unrecognised checkpoint layout (first keys: {sorted(state_dict)[:6]}); expected transformers CLIPModel "
        f"keys (vision_model.*, text_model.*), OpenAI keys (visual.*, transformer.*) or a finelip-kit checkpoint"
    )


def convert_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a foreign CLIP state dict (OpenAI, Long-CLIP or transformers layout) to the kit's names."""
    layout = checkpoint_format(state_dict)
    if layout == "finelip":
        return dict(state_dict)
    hf = _openai_to_hf(state_dict) if layout == "openai" else state_dict
    return _hf_to_finelip(hf)


# transformers name (under vision_model.) <-> timm name (under vision.vit.); {i} layer, {p} weight|bias
_VISION_NAMES = [
    ("pre_layrnorm.{p}", "norm_pre.{p}"),
    ("post_layernorm.{p}", "norm.{p}"),
    ("embeddings.patch_embedding.weight", "patch_embed.proj.weight"),
    ("encoder.layers.{i}.layer_norm1.{p}", "blocks.{i}.norm1.{p}"),
    ("encoder.layers.{i}.layer_norm2.{p}", "blocks.{i}.norm2.{p}"),
    ("encoder.layers.{i}.self_attn.out_proj.{p}", "blocks.{i}.attn.proj.{p}"),
    ("encoder.layers.{i}.mlp.fc1.{p}", "blocks.{i}.mlp.fc1.{p}"),
    ("encoder.layers.{i}.mlp.fc2.{p}", "blocks.{i}.mlp.fc2.{p}"),
]
# OpenAI residual-block name -> transformers encoder-layer name (both towers)
_OPENAI_BLOCK_NAMES = [
    ("ln_1.{p}", "layer_norm1.{p}"),
    ("ln_2.{p}", "layer_norm2.{p}"),
    ("attn.out_proj.{p}", "self_attn.out_proj.{p}"),
    ("mlp.c_fc.{p}", "mlp.fc1.{p}"),
    ("mlp.c_proj.{p}", "mlp.fc2.{p}"),
]


def _pattern(template: str) -> re.Pattern:
    escaped = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(escaped + "$")


def _rename(name: str, table: list[tuple[str, str]], reverse: bool = False) -> str | None:
    for source, target in table:
        if reverse:
            source, target = target, source
        match = _pattern(source).match(name)
        if match:
            return target.format(**match.groupdict())
    return None


def _openai_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in sd.items():
        if key in ("input_resolution", "context_length", "vocab_size", "positional_embedding_res"):
            continue
        block = re.match(r"(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$", key)
        if block:
            tower = "vision_model" if block.group(1) else "text_model"
            prefix = f"{tower}.encoder.layers.{block.group(2)}."
            rest = block.group(3)
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = "weight" if rest.endswith("weight") else "bias"
                for name, part in zip("qkv", value.chunk(3, dim=0)):
                    out[f"{prefix}self_attn.{name}_proj.{kind}"] = part
                continue
            renamed = _rename(rest, _OPENAI_BLOCK_NAMES)
            if renamed is None:
                unknown.append(key)
            else:
                out[prefix + renamed] = value
            continue
        simple = {
            "visual.class_embedding": "vision_model.embeddings.class_embedding",
            "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
            "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
            "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
            "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
            "visual.ln_post.weight": "vision_model.post_layernorm.weight",
            "visual.ln_post.bias": "vision_model.post_layernorm.bias",
            "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
            "ln_final.weight": "text_model.final_layer_norm.weight",
            "ln_final.bias": "text_model.final_layer_norm.bias",
            "logit_scale": "logit_scale",
        }
        if key in simple:
            out[simple[key]] = value
        elif key == "visual.proj":
            out["visual_projection.weight"] = value.T.contiguous()
        elif key == "text_projection":
            out["text_projection.weight"] = value.T.contiguous()
        elif key == "positional_embedding":
            out["text_model.embeddings.position_embedding.weight"] = _effective_text_positions(sd)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"OpenAI-format checkpoint has keys this mapping does not know: {unknown[:10]}")
    return out


def _effective_text_positions(sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """The position table a checkpoint actually uses (Long-CLIP: base rows < 20, residual rows after)."""
    table = sd["positional_embedding"]
    residual = sd.get("positional_embedding_res")
    if residual is None:
        return table
    if residual.shape != table.shape:
        raise ValueError(
            f"Long-CLIP checkpoint: positional_embedding {tuple(table.shape)} and positional_embedding_res "
            f"{tuple(residual.shape)} differ in shape"
        )
    return torch.cat([table[:LONGCLIP_KEEP], residual[LONGCLIP_KEEP:]])


# Whole-tensor renames between transformers' CLIPModel and the kit, used in both directions.
_RENAMES = {
    "text_projection.weight": "text.projection.weight",
    "visual_projection.weight": "vision.vit.head.weight",
    "logit_scale": "logit_scale",
}
_TEXT_PREFIXES = ("text_model.", "text.transformer.")


def _hf_to_finelip(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in sd.items():
        if key.endswith("position_ids"):
            continue  # a buffer older transformers versions saved
        if key.startswith(_TEXT_PREFIXES[0]):
            out[_TEXT_PREFIXES[1] + key[len(_TEXT_PREFIXES[0]) :]] = value
        elif key in _RENAMES:
            out[_RENAMES[key]] = value
        elif key == "vision_model.embeddings.class_embedding":
            out["vision.vit.cls_token"] = value.reshape(1, 1, -1)
        elif key == "vision_model.embeddings.position_embedding.weight":
            out["vision.vit.pos_embed"] = value.unsqueeze(0)
        elif key.startswith("vision_model."):
            name = key[len("vision_model.") :]
            attention = re.match(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", name)
            if attention:
                qkv.setdefault((attention.group(1), attention.group(3)), {})[attention.group(2)] = value
                continue
            renamed = _rename(name, _VISION_NAMES)
            if renamed is None:
                unknown.append(key)
            else:
                out["vision.vit." + renamed] = value
        else:
            unknown.append(key)
    for (layer, kind), parts in qkv.items():
        if set(parts) != set("qkv"):
            raise ValueError(f"vision layer {layer}: attention {kind} has only {sorted(parts)} of q, k, v")
        out[f"vision.vit.blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    if unknown:
        raise ValueError(f"transformers CLIP checkpoint has keys this mapping does not know: {unknown[:10]}")
    return out


_INVERSE_RENAMES = {ours: hf for hf, ours in _RENAMES.items()}


def finelip_to_hf(model: FineLIP) -> dict[str, torch.Tensor]:
    """The towers of ``model`` as a transformers ``CLIPModel`` state dict (the inverse mapping)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach()
        if key in _POSITION_KEYS or key.startswith(_NEW_MODULES):
            continue
        if key.startswith(_TEXT_PREFIXES[1]):
            out[_TEXT_PREFIXES[0] + key[len(_TEXT_PREFIXES[1]) :]] = value
        elif key in _INVERSE_RENAMES:
            out[_INVERSE_RENAMES[key]] = value
        elif key == "vision.vit.cls_token":
            out["vision_model.embeddings.class_embedding"] = value.reshape(-1)
        elif key == "vision.vit.pos_embed":
            out["vision_model.embeddings.position_embedding.weight"] = value[0]
        elif key.startswith("vision.vit."):
            name = key[len("vision.vit.") :]
            attention = re.match(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", name)
            if attention:
                prefix = f"vision_model.encoder.layers.{attention.group(1)}.self_attn."
                for part, chunk in zip("qkv", value.chunk(3, dim=0)):
                    out[f"{prefix}{part}_proj.{attention.group(2)}"] = chunk
                continue
            renamed = _rename(name, _VISION_NAMES, reverse=True)
            if renamed is None:
                raise ValueError(f"vision weight {key!r} has no place in a transformers CLIPModel (not a CLIP-style ViT?)")
            out["vision_model." + renamed] = value
        else:
            raise ValueError(f"weight {key!r} has no place in a transformers CLIPModel")
    out["text_model.embeddings.position_embedding.weight"] = model.text.position_table.detach()
    return out


# ----------------------------------------------------------------------------- configs of foreign checkpoints
def config_from_hf(hf_config, **overrides: Any) -> FineLIPConfig:
    """A ``FineLIPConfig`` for the towers of a transformers ``CLIPConfig``."""
    vision, text = hf_config.vision_config, hf_config.text_config
    data = dict(
        vision=dict(
            image_size=vision.image_size,
            patch_size=vision.patch_size,
            width=vision.hidden_size,
            depth=vision.num_hidden_layers,
            heads=vision.num_attention_heads,
            mlp_ratio=vision.intermediate_size / vision.hidden_size,
            act=_activation(vision.hidden_act),
            norm_eps=vision.layer_norm_eps,
        ),
        text=dict(
            vocab_size=text.vocab_size,
            width=text.hidden_size,
            depth=text.num_hidden_layers,
            heads=text.num_attention_heads,
            mlp_dim=text.intermediate_size,
            act=_activation(text.hidden_act),
            norm_eps=text.layer_norm_eps,
            pretrained_context=text.max_position_embeddings,
        ),
        embed_dim=hf_config.projection_dim,
    )
    return _pretrained_config(data, **overrides)


def config_from_openai(sd: dict[str, torch.Tensor], **overrides: Any) -> FineLIPConfig:
    """A ``FineLIPConfig`` read off an OpenAI-format state dict (heads = width / 64, as OpenAI's)."""
    width = sd["visual.conv1.weight"].shape[0]
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = sd["ln_final.weight"].shape[0]

    def depth(prefix: str) -> int:
        return len({k.split(".")[len(prefix.split(".")) - 1] for k in sd if k.startswith(prefix)})

    data = dict(
        vision=dict(
            image_size=patch * grid,
            patch_size=patch,
            width=width,
            depth=depth("visual.transformer.resblocks."),
            heads=max(1, width // 64),
            mlp_ratio=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
            act="quick_gelu",
        ),
        text=dict(
            vocab_size=sd["token_embedding.weight"].shape[0],
            width=text_width,
            depth=depth("transformer.resblocks."),
            heads=max(1, text_width // 64),
            mlp_dim=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            act="quick_gelu",
            pretrained_context=sd["positional_embedding"].shape[0],
        ),
        embed_dim=sd["text_projection"].shape[1],
    )
    return _pretrained_config(data, **overrides)


def _activation(name: str) -> str:
    if name not in ("quick_gelu", "gelu"):
        raise ValueError(f"activation {name!r} is not supported by the kit's towers (quick_gelu, gelu)")
    return name


def _pretrained_config(data: dict[str, Any], **overrides: Any) -> FineLIPConfig:
    """Defaults for fine-tuning a pretrained CLIP the FineLIP / Long-CLIP way, then the overrides."""
    num_patches = (data["vision"]["image_size"] // data["vision"]["patch_size"]) ** 2
    data["atrm_k"] = max(1, int(num_patches * 0.2))
    data["text"].setdefault("freeze_kept_positions", True)
    data["text"]["context_length"] = max(248, data["text"]["pretrained_context"])
    return FineLIPConfig.from_dict(data).replace(**_text_keys(overrides))


# ----------------------------------------------------------------------------- loading into a model
def load_converted(
    model: FineLIP, weights: dict[str, torch.Tensor], source: str, optional: tuple[str, ...] = ()
) -> FineLIP:
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


def from_clip(source: str | Path, **overrides: Any) -> FineLIP:
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
            **{"text.pretrained_context": rows, "text.context_length": rows, **_text_keys(overrides)}
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
    model = load_converted(FineLIP(config), weights, str(source), optional=optional)
    if vision_timm is not None:
        model.vision = vision
    modules = Path(str(source)) / MODULES_FILE
    if modules.is_file():
        _load_modules(model, modules)
    return model


def _text_keys(overrides: dict[str, Any]) -> dict[str, Any]:
    aliases = {"context_length": "text.context_length", "stretch": "text.stretch", "keep": "text.keep"}
    return {aliases.get(k, k): v for k, v in overrides.items()}


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


def from_openai_checkpoint(path: str | Path, **overrides: Any) -> FineLIP:
    """A FineLIP model from an OpenAI-format ``.pt`` (OpenAI CLIP, Long-CLIP); see ``FineLIP.from_openai_checkpoint``."""
    state_dict = read_state_dict(path)
    if checkpoint_format(state_dict) != "openai":
        raise ValueError(f"{str(path)!r} is not an OpenAI-format CLIP checkpoint (no visual.conv1.weight)")
    config = config_from_openai(state_dict, **overrides)
    return load_converted(FineLIP(config), convert_state_dict(state_dict), str(path))


def timm_vision_tower(
    name: str, file: str | Path | None = None, embed_dim: int | None = None, architecture: dict[str, Any] | None = None
):
    """A ``VisionTower`` from a timm CLIP ViT name, with weights from ``file`` (timm converts
    OpenAI / open_clip ``visual.*`` keys) or, without a file, from the hub when online.
    ``architecture``: keyword overrides for ``timm.create_model`` (``depth=...``)."""
    import timm

    from .towers import VisionTower

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
def save_pretrained(model: FineLIP, directory: str | Path, tokenizer=None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and tokenizer files to ``directory``
    (``tokenizer=None``: CLIP's bundled one at the model's context; ``False``: no tokenizer files)."""
    from safetensors.torch import save_file

    from . import __version__

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


def load_pretrained(directory: str | Path, **overrides: Any) -> FineLIP:
    """Restore a ``save_pretrained`` directory exactly, or, with ``overrides``, start a new
    configuration from it: the position table is re-stretched to a new context, new modules
    (ATRM) whose shapes changed start fresh, everything else is loaded and must fit.
    ``directory`` may also name a model packaged with the kit (``"tiny-synthetic-clip"``)."""
    from .assets import asset_names, asset_path, load_asset_weights

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
    try:
        saved = json.loads(config_path.read_text())
        data = saved["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{str(config_path)!r} is not a finelip-kit config ({error})") from error
    _check_config_keys(data, str(config_path))
    config = FineLIPConfig.from_dict(data)
    weights = load_asset_weights(directory) if packaged else read_state_dict(weights_path)
    if not overrides:
        model = FineLIP(config)
        check_weights(model.state_dict(), weights, str(weights_path))
        model.load_state_dict(weights, strict=True)
        return model
    table = torch.cat([weights.pop(k) for k in _POSITION_KEYS if k in weights])
    new_config = config.replace(**{"text.pretrained_context": table.shape[0], **_text_keys(overrides)})
    model = FineLIP(new_config)
    shapes = model.state_dict()
    fresh = [k for k in weights if k.startswith(_NEW_MODULES) and (k not in shapes or shapes[k].shape != weights[k].shape)]
    for key in fresh:
        del weights[key]
    return load_converted(model, {**weights, TEXT_POSITIONS: table}, str(weights_path))


def _check_config_keys(data: dict[str, Any], source: str) -> None:
    import dataclasses

    from .config import TextConfig, VisionConfig

    for section, cls in ((None, FineLIPConfig), ("vision", VisionConfig), ("text", TextConfig)):
        given = data if section is None else data.get(section, {})
        fields = {f.name for f in dataclasses.fields(cls)}
        missing, extra = sorted(fields - set(given)), sorted(set(given) - fields)
        where = "config" if section is None else f"config.{section}"
        if missing or extra:
            raise ValueError(
                f"{source}: {where} does not match this finelip-kit version: missing keys {missing}, unknown keys {extra}. "
                f"It was saved by another version; add or remove those keys (defaults are in finelip_kit/config.py)"
            )


# ----------------------------------------------------------------------------- exports
def export_text_encoder(model: FineLIP, directory: str | Path, tokenizer=None) -> Path:
    """Write a transformers ``CLIPTextModelWithProjection`` + tokenizer (``model_max_length`` = context).

    ``CLIPTextModel.from_pretrained(directory)`` and diffusers pipelines take it unchanged.
    """
    from transformers import CLIPTextModelWithProjection

    directory = Path(directory)
    hf = CLIPTextModelWithProjection(_hf_text_config(model))
    weights = finelip_to_hf(model)
    text_weights = {k: v for k, v in weights.items() if k.startswith("text_model.") or k == "text_projection.weight"}
    hf.load_state_dict(text_weights, strict=True)
    hf.save_pretrained(str(directory))
    (tokenizer or get_tokenizer(context_length=model.context_length)).save_pretrained(directory)
    return directory


def export_clip(model: FineLIP, directory: str | Path, tokenizer=None) -> Path:
    """Write the towers as a transformers ``CLIPModel`` (+ tokenizer); ATRM weights and the kit's
    config go beside it in their own files, so ``FineLIP.from_clip(directory)`` restores them."""
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

    vision = model.config.vision
    if vision.timm_name is not None:
        raise ValueError(f"export_clip needs the kit's CLIP ViT; this model's image tower is timm {vision.timm_name!r}")
    vision_config = CLIPVisionConfig(
        hidden_size=vision.width,
        intermediate_size=int(vision.width * vision.mlp_ratio),
        num_hidden_layers=vision.depth,
        num_attention_heads=vision.heads,
        image_size=vision.image_size,
        patch_size=vision.patch_size,
        hidden_act=vision.act,
        layer_norm_eps=vision.norm_eps,
        projection_dim=model.config.embed_dim,
    )
    config = CLIPConfig(
        text_config=_hf_text_config(model).to_dict(),
        vision_config=vision_config.to_dict(),
        projection_dim=model.config.embed_dim,
        logit_scale_init_value=float(model.logit_scale.detach()),
    )
    hf = CLIPModel(config)
    hf.load_state_dict(finelip_to_hf(model), strict=True)
    directory = Path(directory)
    hf.save_pretrained(str(directory))
    (tokenizer or get_tokenizer(context_length=model.context_length)).save_pretrained(directory)
    modules = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k.startswith(_NEW_MODULES)}
    if modules:
        save_file(modules, str(directory / MODULES_FILE), metadata={"format": "pt"})
    (directory / MODULES_CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2))
    return directory


def _hf_text_config(model: FineLIP):
    from transformers import CLIPTextConfig

    text = model.config.text
    return CLIPTextConfig(
        vocab_size=text.vocab_size,
        hidden_size=text.width,
        intermediate_size=text.mlp_dim,
        num_hidden_layers=text.depth,
        num_attention_heads=text.heads,
        max_position_embeddings=model.context_length,
        hidden_act=text.act,
        layer_norm_eps=text.norm_eps,
        bos_token_id=text.bos_token_id,
        eos_token_id=text.eos_token_id,
        pad_token_id=text.pad_token_id,
        projection_dim=model.config.embed_dim,
    )


def _load_modules(model: FineLIP, path: Path) -> None:
    weights = read_state_dict(path)
    expected = {k: v for k, v in model.state_dict().items() if k.startswith(_NEW_MODULES)}
    check_weights(expected, weights, str(path))
    model.load_state_dict(weights, strict=False)


# ----------------------------------------------------------------------------- the one resolver
MODEL_FORMS = (
    "preset:<name>       a fresh model of a named architecture ({presets}); a bare preset name works too",
    "<packaged name>     a model shipped with the kit ({assets})",
    "<dir>               a finelip-kit checkpoint (config.json + model.safetensors, from save_pretrained)",
    "<dir> or hf:<id>    a transformers CLIPModel directory, or a hub id (online only); clip:<id> is the same",
    "<file>.pt|.pth|.bin|.safetensors   an OpenAI / Long-CLIP checkpoint (TorchScript archives included)",
)


def load_model(spec: "str | Path | FineLIP", **overrides: Any) -> FineLIP:
    """The one way the kit turns a name into a model — the CLI, notebooks, grid, viz and export
    all call it. ``spec`` (see ``MODEL_FORMS``), resolved in this order:

    ``preset:NAME`` / ``hf:ID`` / ``clip:ID`` (explicit); an existing path — a finelip-kit
    checkpoint dir, a transformers CLIP dir, or a checkpoint file; a packaged model name; a
    bare preset name; an ``org/name`` hub id. Anything else is an error that lists the forms
    and the closest names, without a hub call. ``overrides``: config keys
    (``atrm_k=8``, ``**{"text.context_length": 248}``) applied while loading.
    """
    from .assets import asset_names, asset_path
    from .config import PRESETS
    from .model import create_model

    if isinstance(spec, FineLIP):
        if overrides:
            raise ValueError("load_model(model, **overrides): a built model cannot be reconfigured; pass a name or path")
        return spec
    text = str(spec)
    kind, _, rest = text.partition(":")
    if kind == "preset" and rest:
        if rest not in PRESETS:
            raise ValueError(f"unknown preset {rest!r} in model {text!r}; presets: {sorted(PRESETS)}")
        return create_model(rest, **overrides)
    if kind in ("hf", "clip") and rest:
        return from_clip(rest, **overrides)
    path = Path(text).expanduser()
    if path.is_dir():
        config = path / CONFIG_FILE
        if (path / WEIGHTS_FILE).is_file() and config.is_file() and '"finelip_kit_version"' in config.read_text():
            return load_pretrained(path, **overrides)
        if config.is_file():
            return from_clip(str(path), **overrides)
        raise FileNotFoundError(
            f"model directory {text!r} holds no {CONFIG_FILE}: a finelip-kit checkpoint (save_pretrained) or a "
            f"transformers CLIP directory was expected"
        )
    if path.is_file():
        return from_openai_checkpoint(path, **overrides)
    if asset_path(text) is not None:
        return load_pretrained(text, **overrides)
    if text in PRESETS:
        return create_model(text, **overrides)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text) and not text.startswith((".", "/")):
        return from_clip(text, **overrides)  # a hub id: transformers says clearly when it is offline
    import difflib

    known = sorted(PRESETS) + asset_names()
    close = difflib.get_close_matches(text, known + [f"preset:{p}" for p in PRESETS], n=3, cutoff=0.5)
    forms = "\n  ".join(MODEL_FORMS).format(presets=", ".join(sorted(PRESETS)), assets=", ".join(asset_names()))
    raise ValueError(
        f"no model {text!r}: it is not a preset, a packaged model, an existing file or directory, or a hub id "
        f"(org/name).{f' Did you mean {close}?' if close else ''} A model can be named as:\n  {forms}"
    )
