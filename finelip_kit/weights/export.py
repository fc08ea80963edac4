"""Exports for the ecosystem: a transformers text encoder (diffusers), a full ``CLIPModel``, and
an open_clip model (config + weights in open_clip's layout)."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from ..model.tokenizer import get_tokenizer
from .convert import finelip_to_hf, hf_to_openai
from .files import MODULES_CONFIG_FILE, MODULES_FILE, _NEW_MODULES


# ----------------------------------------------------------------------------- exports
def export_text_encoder(model: nn.Module, directory: str | Path, tokenizer=None) -> Path:
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


def export_clip(model: nn.Module, directory: str | Path, tokenizer=None) -> Path:
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


OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"


def open_clip_model_config(model: nn.Module) -> dict:
    """open_clip's model config for the towers of ``model`` (``context_length`` = the model's)."""
    config = model.config
    vision, text = config.vision, config.text
    if vision.timm_name is not None:
        raise ValueError(f"the open_clip export needs the kit's CLIP ViT; this model's image tower is timm {vision.timm_name!r}")
    if vision.act != text.act:
        raise ValueError(f"open_clip has one activation for both towers; this model has vision.act={vision.act!r} and "
                         f"text.act={text.act!r}")
    if abs(vision.norm_eps - 1e-5) > 1e-12 or abs(text.norm_eps - 1e-5) > 1e-12:
        raise ValueError(f"open_clip's CLIP uses LayerNorm eps 1e-5; this model has {vision.norm_eps} / {text.norm_eps}")
    return {
        "embed_dim": config.embed_dim,
        "quick_gelu": vision.act == "quick_gelu",
        "vision_cfg": {"image_size": vision.image_size, "layers": vision.depth, "width": vision.width,
                       "head_width": vision.width // vision.heads, "mlp_ratio": vision.mlp_ratio,
                       "patch_size": vision.patch_size},
        "text_cfg": {"context_length": model.context_length, "vocab_size": text.vocab_size, "width": text.width,
                     "heads": text.heads, "layers": text.depth, "mlp_ratio": text.mlp_dim / text.width},
    }


def export_open_clip(model: nn.Module, directory: str | Path, tokenizer=None, name: str = "finelip-export") -> Path:
    """Write ``open_clip_config.json`` + ``open_clip_model.safetensors`` (open_clip's own layout and
    file names) and ``<name>.json`` (the bare model config). Either of open_clip's documented ways
    then loads it: ``create_model_and_transforms("local-dir:<directory>")`` and
    ``get_tokenizer("local-dir:<directory>")``, or ``add_model_config("<directory>/<name>.json")``
    then ``create_model_and_transforms(name, pretrained="<directory>/open_clip_model.safetensors")``.
    ATRM is not part of an open_clip model: the export carries the towers (global features)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_config = open_clip_model_config(model)
    weights = {k: v.detach().contiguous() for k, v in hf_to_openai(finelip_to_hf(model)).items()}
    save_file(weights, str(directory / OPEN_CLIP_WEIGHTS), metadata={"format": "pt"})
    vision = model.config.vision
    preprocess = {"mean": list(vision.mean), "std": list(vision.std), "interpolation": "bicubic", "resize_mode": "shortest"}
    (directory / OPEN_CLIP_CONFIG).write_text(json.dumps({"model_cfg": model_config, "preprocess_cfg": preprocess}, indent=2))
    (directory / f"{name}.json").write_text(json.dumps(model_config, indent=2))
    return directory


def _hf_text_config(model: nn.Module):
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
